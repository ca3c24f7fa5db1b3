"""The render spec: one validated, immutable description of a picture (docs/api.md).

Validation lives here and only here. ``parse_spec`` accepts the JSON body of a
request (or CLI options, or query parameters after ``spec_from_query``) and
either returns a ``RenderSpec`` or raises ``SpecError`` naming the field and
what is allowed. Nothing is queued or written before this succeeds.

The normalized form (``RenderSpec.normalized()``) fills defaults, turns every
number into its canonical type and drops fields the picture does not depend on
(``c`` for mandelbrot, ``colormap`` for msgpack), so its hash is stable under key
order, ``1`` vs ``1.0`` and omitted defaults: the basis of job ids and cache keys.
``precision`` appears only when it is the opt-in ``"float32"``, so every spec
without it keeps the hashes (and cached tiles) it had before the field existed.

Deep views: ``center``, ``scale`` and ``c`` may be decimal strings of any length. A view float64
can resolve (the pixel spacing at least ``MIN_SPACING_ULPS`` ulps of its coordinates) is rendered
by docs/api.md's exact float64 rule at the float64 nearest each decimal, and its normalized form holds
those floats, exactly as before strings were accepted. A finer view is *deep* (``RenderSpec.deep``):
it is rendered by perturbation (``fractally.picture.perturb``) and its normalized form keeps the canonical
decimal strings (``fractally.picture.decimals``), so its hash names the exact point.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from decimal import Decimal

from fractally.picture.decimals import DECIMAL, MAX_TEXT, canonical, parse_decimal, to_float
from fractally.errors import SpecError

# --- Limits: explicit, documented in docs/api.md, enforced before any work. ---
MAX_SIDE = 65_536  # width or height, pixels
MAX_JOB_PIXELS = 32_768 * 32_768  # one gigapixel per job
MAX_MSGPACK_PIXELS = (2**32 - 1) // 4  # one msgpack bin holds < 4 GiB of uint32 counts
MAX_SYNC_PIXELS = 2_097_152  # GET /v1/render.png: e.g. 1920x1080 or 1448x1448
MAX_SYNC_WORK = 2_097_152 * 1_000  # pixels * max_iter for a synchronous render
MAX_ITER = 100_000
MIN_TILE, MAX_TILE = 16, 4_096
MAX_TILES = 262_144  # tiles per job
MAX_COORD = 1e6  # |center|, |c| components and scale
MAX_ESCAPE_RADIUS = 1e100
#: Pixel spacing must be this many float64 ulps of the largest coordinate, or
#: neighbouring pixels would share a value: the zoom is beyond float64.
MIN_SPACING_ULPS = 8
#: precision "float32" (the opt-in, see ``_check_float32``): the pixel spacing must be at least this
#: times the largest coordinate (float32 keeps 24 bits, so each pixel centre rounds by at most 2**-24
#: of it: at most 1/16 of a pixel), and R² must fit a float32.
FLOAT32_MIN_SPACING = 2.0**-20
FLOAT32_MAX_ESCAPE_RADIUS = 1e19
#: Deep views (below float64's resolution): the smallest scale, and the iteration limit (the
#: reference orbit is computed in arbitrary precision, one step per iteration, before any tile).
MIN_DEEP_SCALE = Decimal("1e-1000")
MAX_DEEP_ITER = 50_000

FRACTALS = ("julia", "mandelbrot")
FORMATS = ("png", "msgpack")
PRECISIONS = ("float64", "float32")  # float64: docs/api.md's exact rule (the default); float32: the faster opt-in

DEFAULTS: dict[str, Any] = {
    "fractal": "julia",
    "center": (0.0, 0.0),
    "scale": 3.2,
    "width": 1024,
    "height": 768,
    "max_iter": 256,
    "escape_radius": 2.0,
    "tile_size": 256,
    "format": "png",
    "colormap": None,  # filled with colour.DEFAULT_COLORMAP
    "precision": "float64",
}
FIELDS = ("fractal", "c", *[k for k in DEFAULTS if k != "fractal"])


@dataclass(frozen=True)
class DeepCoords:
    """A deep view's coordinates as canonical decimal strings: what the reference orbit is computed from."""

    center: tuple[str, str]
    scale: str
    c: tuple[str, str] | None


@dataclass(frozen=True)
class RenderSpec:
    """A valid picture. Build it with ``parse_spec``; never by hand in request paths."""

    fractal: str
    c: tuple[float, float] | None
    center: tuple[float, float]
    scale: float
    width: int
    height: int
    max_iter: int
    escape_radius: float
    tile_size: int
    format: str
    colormap: str | None
    precision: str = "float64"
    #: Set for views below float64's resolution (rendered by perturbation); ``center``, ``scale``
    #: and ``c`` then hold the nearest float64s (``scale`` may be 0.0), for display only.
    deep: DeepCoords | None = None

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def julia(self) -> bool:
        return self.fractal == "julia"

    def normalized(self) -> dict[str, Any]:
        """Canonical JSON-able form: what ``parse_spec`` of it returns is this spec again."""
        out: dict[str, Any] = {
            "fractal": self.fractal,
            "center": list(self.center),
            "scale": self.scale,
            "width": self.width,
            "height": self.height,
            "max_iter": self.max_iter,
            "escape_radius": self.escape_radius,
            "tile_size": self.tile_size,
            "format": self.format,
        }
        if self.c is not None:
            out["c"] = list(self.c)
        if self.colormap is not None:
            out["colormap"] = self.colormap
        if self.precision != DEFAULTS["precision"]:  # only the opt-in: default specs keep their old hashes
            out["precision"] = self.precision
        if self.deep is not None:  # the exact decimals: a float64 view's form is unchanged
            out["center"] = list(self.deep.center)
            out["scale"] = self.deep.scale
            if self.deep.c is not None:
                out["c"] = list(self.deep.c)
        return out

    def content_hash(self) -> str:
        """Hash of everything the result depends on: the job id."""
        return self._content_hash

    def pixels_hash(self) -> str:
        """Hash of what the tiles' counts depend on: shared by PNG and msgpack jobs of one picture."""
        return self._pixels_hash

    # The hashes are asked for on every tile (its key, its job's id); the spec is frozen, so each is
    # computed once (json + sha256 was ~6 us a call). cached_property keeps them out of the fields.

    @functools.cached_property
    def _content_hash(self) -> str:
        return _hash(self.normalized())

    @functools.cached_property
    def _pixels_hash(self) -> str:
        norm = self.normalized()
        for key in ("format", "colormap"):
            norm.pop(key, None)
        return _hash(norm)


def _hash(obj: Mapping[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# --- field parsers: each raises SpecError(message, field) ---

def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{field} must be a number, got {_describe(value)}", field)
    try:
        number = float(value)
    except OverflowError:  # a JSON integer with hundreds of digits
        raise SpecError(f"{field} is far too large", field) from None
    if not math.isfinite(number):
        raise SpecError(f"{field} must be a finite number, got {value!r}", field)
    return number


def _integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{field} must be a whole number, got {_describe(value)}", field)
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise SpecError(f"{field} must be a whole number, got {value!r}", field)
    number = int(value)
    if not low <= number <= high:
        raise SpecError(f"{field} must be between {low} and {high}, got {number}", field)
    return number


def _pair(value: Any, field: str) -> tuple[Decimal, Decimal]:
    """A pair [re, im] of numbers or decimal strings, exact."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise SpecError(f"{field} must be a pair of numbers [re, im], got {_describe(value)}", field)
    pair = (parse_decimal(value[0], field), parse_decimal(value[1], field))
    if max(abs(pair[0]), abs(pair[1])) > MAX_COORD:
        raise SpecError(f"{field} components must be within ±{MAX_COORD:g}", field)
    return pair


def _floats(pair: tuple[Decimal, Decimal]) -> tuple[float, float]:
    """The nearest float64s (-0.0 -> 0.0: one hash per picture)."""
    return (to_float(pair[0]), to_float(pair[1]))


def _choice(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(f"{field} must be one of {', '.join(allowed)}; got {_describe(value)}", field)
    return value


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return f"the text {shown!r}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return repr(value)[:40]


def parse_spec(data: Any, *, sync: bool = False) -> RenderSpec:
    """Validate a spec mapping. ``sync`` applies the tighter limits of synchronous renders."""
    from fractally.picture.colour import COLORMAPS, DEFAULT_COLORMAP

    if not isinstance(data, Mapping):
        raise SpecError(f"the render spec must be a JSON object, got {_describe(data)}", None)
    unknown = sorted(str(k) for k in data if k not in FIELDS)
    if unknown:
        raise SpecError(
            f"unknown field {unknown[0]!r}; the spec's fields are {', '.join(FIELDS)}", unknown[0][:64]
        )
    get = lambda key: data[key] if data.get(key) is not None else DEFAULTS[key]  # noqa: E731

    fractal = _choice(get("fractal"), "fractal", FRACTALS)
    # c is checked whenever it is given (a mandelbrot ignores it, but nonsense is still rejected)
    c_exact = _pair(data["c"], "c") if data.get("c") is not None else None
    if fractal == "julia" and c_exact is None:
        raise SpecError("c is required for a julia set: give it as [re, im], e.g. [-0.8, 0.156]", "c")
    if fractal != "julia":
        c_exact = None
    c = _floats(c_exact) if c_exact is not None else None
    center_exact = _pair(get("center"), "center")
    center = _floats(center_exact)
    scale_exact = parse_decimal(get("scale"), "scale")
    if not 0 < scale_exact <= MAX_COORD:
        raise SpecError(f"scale must be greater than 0 and at most {MAX_COORD:g}, got {_describe(get('scale'))}",
                        "scale")
    scale = to_float(scale_exact)
    width = _integer(get("width"), "width", 1, MAX_SIDE)
    height = _integer(get("height"), "height", 1, MAX_SIDE)
    pixel_cap = MAX_SYNC_PIXELS if sync else MAX_JOB_PIXELS
    if width * height > pixel_cap:
        kind = "a synchronous render (use POST /v1/renders for bigger images)" if sync else "one job"
        raise SpecError(
            f"width × height is {width * height} pixels; at most {pixel_cap} are allowed for {kind}", "width"
        )
    max_iter = _integer(get("max_iter"), "max_iter", 1, MAX_ITER)
    if sync and width * height * max_iter > MAX_SYNC_WORK:
        raise SpecError(
            f"width × height × max_iter must be at most {MAX_SYNC_WORK} for a synchronous render; "
            "lower max_iter or submit a job with POST /v1/renders",
            "max_iter",
        )
    escape_radius = _number(get("escape_radius"), "escape_radius")
    if not 2 <= escape_radius <= MAX_ESCAPE_RADIUS:
        raise SpecError(f"escape_radius must be between 2 and {MAX_ESCAPE_RADIUS:g}, got {escape_radius!r}",
                        "escape_radius")
    tile_size = _integer(get("tile_size"), "tile_size", MIN_TILE, MAX_TILE)
    tiles = math.ceil(width / tile_size) * math.ceil(height / tile_size)
    if tiles > MAX_TILES:
        raise SpecError(f"this image would need {tiles} tiles of {tile_size} px; at most {MAX_TILES} are "
                        "allowed: raise tile_size", "tile_size")
    spacing = scale / width
    largest = max(1.0, abs(center[0]) + scale, abs(center[1]) + scale * height / width)
    precision = _choice(get("precision"), "precision", PRECISIONS)
    deep = None
    if spacing < MIN_SPACING_ULPS * math.ulp(largest):  # beyond float64: a deep view
        _check_deep(scale_exact, max_iter, precision, MIN_SPACING_ULPS * math.ulp(largest) * width)
        deep = DeepCoords((canonical(center_exact[0]), canonical(center_exact[1])), canonical(scale_exact),
                          (canonical(c_exact[0]), canonical(c_exact[1])) if c_exact is not None else None)
    if precision == "float32":
        _check_float32(scale, width, max(largest, *map(abs, c)) if c else largest, escape_radius)
    fmt = _choice(get("format"), "format", FORMATS)
    if fmt == "msgpack" and width * height > MAX_MSGPACK_PIXELS:
        raise SpecError(f"a msgpack result holds at most {MAX_MSGPACK_PIXELS} pixels (msgpack's 4 GiB binary "
                        "limit); use format png or a smaller image", "format")
    colormap = None
    if fmt == "png":
        given = data.get("colormap")
        colormap = _choice(DEFAULT_COLORMAP if given is None else given, "colormap", tuple(COLORMAPS))
    elif data.get("colormap") is not None:
        _choice(data["colormap"], "colormap", tuple(COLORMAPS))  # still reject nonsense
    return RenderSpec(fractal, c, center, scale, width, height, max_iter, escape_radius, tile_size, fmt, colormap,
                      precision, deep)


def _check_deep(scale: Decimal, max_iter: int, precision: str, float64_limit: float) -> None:
    """The limits of deep views (docs/api.md, "The render spec and its limits"); a SpecError naming the field to change."""
    if scale < MIN_DEEP_SCALE:
        raise SpecError(f"scale must be at least {canonical(MIN_DEEP_SCALE)} (the deepest view the service renders), "
                        f"got {canonical(scale)[:40]}", "scale")
    if precision == "float32":
        raise SpecError("precision float32 is not available for a deep view (a scale below float64's resolution, "
                        f"here {float64_limit:.3g}); use precision float64 (the default) or a scale of at least "
                        f"{float64_limit:.3g}", "precision")
    if max_iter > MAX_DEEP_ITER:
        raise SpecError(f"max_iter must be at most {MAX_DEEP_ITER} for a deep view (scale below "
                        f"{float64_limit:.3g}), got {max_iter}", "max_iter")


def _check_float32(scale: float, width: int, largest: float, escape_radius: float) -> None:
    """Allow precision float32 only where it is visually safe; else a SpecError naming ``precision``.

    The rule: ``scale / width >= 2**-20 * largest``, with ``largest`` the biggest
    magnitude the view involves, max(1, |center.x| + scale, |center.y| + scale·height/width,
    |c.re|, |c.im|). float32 keeps a 24-bit significand, so rounding a pixel centre,
    c, or an orbit point of size ≤ ``largest`` to float32 moves it by at most
    2**-24·``largest`` = 1/16 of the pixel spacing: every pixel stays within a
    sixteenth of a pixel of its exact place, neighbours stay distinct and evenly
    spaced, and the picture's geometry is that of float64. (The 1 covers the orbit
    itself, whose points are of size 1 to R whatever the view.) What float32 still
    changes is the count of some points on the set's chaotic boundary, where any
    rounding is amplified; docs/api.md gives the share. And R² must fit a float32.
    """
    if escape_radius > FLOAT32_MAX_ESCAPE_RADIUS:
        raise SpecError(f"precision float32 needs escape_radius at most {FLOAT32_MAX_ESCAPE_RADIUS:g} (R² must fit a "
                        f"float32), got {escape_radius:g}; lower escape_radius or use precision float64", "precision")
    if scale / width < FLOAT32_MIN_SPACING * largest:
        raise SpecError("precision float32 is not visually safe for this deep a zoom: float32 would move pixels by "
                        "more than 1/16 of a pixel; it needs scale / width ≥ 2**-20 × the largest coordinate "
                        f"({largest:.3g}), i.e. a scale of at least {FLOAT32_MIN_SPACING * largest * width:.3g}; "
                        "use precision float64 (the default) for this view", "precision")


def spec_from_query(params: Mapping[str, str]) -> dict[str, Any]:
    """Turn query parameters (``c=re,im``, ``center=x,y``, other fields by name) into a spec mapping.

    Only the text-to-number step happens here; ranges are checked by ``parse_spec``. ``c``,
    ``center`` and ``scale`` stay decimal text (any number of digits, for deep views).
    """
    spec: dict[str, Any] = {}
    for key, raw in params.items():
        if key not in FIELDS:
            raise SpecError(f"unknown parameter {key[:64]!r}; the spec's fields are {', '.join(FIELDS)}", key[:64])
        limit = 2 * MAX_TEXT + 1 if key in ("c", "center") else MAX_TEXT if key == "scale" else 256
        if len(raw) > limit:
            raise SpecError(f"{key} is too long", key)
        if key in ("c", "center"):
            parts = raw.split(",")
            if len(parts) != 2:
                raise SpecError(f"{key} must be two numbers separated by a comma, e.g. {key}=-0.8,0.156", key)
            spec[key] = [_decimal_text(p, key) for p in parts]
        elif key == "scale":
            spec[key] = _decimal_text(raw, key)
        elif key in ("fractal", "format", "colormap", "precision"):
            spec[key] = raw
        elif key in ("width", "height", "max_iter", "tile_size"):
            spec[key] = _parse_int(raw, key)
        else:
            spec[key] = _parse_float(raw, key)
    return spec


_WHOLE = re.compile(r"[+-]?\d+", re.ASCII)


def _decimal_text(text: str, field: str) -> str:
    """A coordinate's text, checked for syntax (``parse_spec`` reads it exactly)."""
    parse_decimal(text, field)
    return text.strip()


def _parse_float(text: str, field: str) -> float:
    """A plain decimal number: no underscores, no 'nan'/'inf', no hex."""
    try:
        if not DECIMAL.fullmatch(text.strip()):
            raise ValueError
        value = float(text.strip())
    except ValueError:
        raise SpecError(f"{field} must be a number, got {text[:40]!r}", field) from None
    if not math.isfinite(value):
        raise SpecError(f"{field} must be a finite number, got {text[:40]!r}", field)
    return value


def _parse_int(text: str, field: str) -> int:
    try:
        if not _WHOLE.fullmatch(text.strip()) or len(text.strip()) > 20:
            raise ValueError
        return int(text.strip())
    except ValueError:
        raise SpecError(f"{field} must be a whole number, got {text[:40]!r}", field) from None
