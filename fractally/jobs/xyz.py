"""XYZ tiles over the complex plane: the web-map scheme the explorer pans and zooms.

The scheme (also in docs/api.md, "The explorer and XYZ tiles")::

    tile 0/0/0 covers the square  real ∈ [-2, 2],  imaginary ∈ [-2, 2]
    zoom z has 2^z × 2^z tiles, each 4 / 2^z complex units wide and 256 × 256 pixels
    x counts columns from the left (real -2), y counts rows from the top (imaginary +2)

so tile z/x/y covers real ∈ [-2 + x·w, -2 + (x+1)·w] and imaginary ∈ [2 - (y+1)·w, 2 - y·w]
with w = 4 / 2^z, and its four children at z+1 (2x, 2y), (2x+1, 2y), (2x, 2y+1), (2x+1, 2y+1)
cut it into quarters exactly (w is a power of two: every corner and centre is exact in float64).

A tile is an ordinary render spec (``xyz_spec``): centre = the tile's centre, scale = w,
width = height = tile_size = 256, format png. So validation, hashing, the counts tile in the
store (``tiles/<pixels hash>/0000000.tile``, shared with any job of the same picture) and
caching all reuse the spec machinery; the coloured PNG is cached at ``xyz/<content hash>.png``.

**Iterations grow with zoom** unless the request gives ``max_iter``: ``min(5000, 200 + 100·z)``.
Deeper views sit closer to the set's boundary, where points escape later; a fixed limit would
paint ever more of the picture as "inside". Every tile of one zoom level shares the rule, so
neighbouring tiles colour alike (the colouring depends on ``max_iter``).

Zoom 0..40 is the float64 pyramid the explorer shows: at z = 40 a pixel is 2⁻⁴⁶ wide, still well above
the validator's float64 limit (8 ulps of coordinates below 4, i.e. 2⁻⁴⁸). Beyond it, up to
``MAX_DEEP_ZOOM``, a tile is a deep view (``fractally.picture.perturb``): its centre and width are exact decimal
strings (every tile corner is a binary fraction, so a finite decimal), and the iteration rule goes on
rising up to ``DEEP_ITER_CAP`` (256² pixels × 30,000 is within the synchronous work limit). Each deep
tile has its own reference orbit (its centre), so neighbouring deep tiles agree with exact counts, not
with each other bit for bit at their edges (a job's tiles do: one orbit per job).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, localcontext

from fractally.picture.codec import decode_tile, encode_png
from fractally.picture.decimals import canonical
from fractally.picture.colour import colourize
from fractally.errors import KeyNotFound, NotFound, SpecError
from fractally.picture.spec import FRACTALS, RenderSpec, parse_spec, spec_from_query
from fractally.store import ObjectStore
from fractally.jobs.tasks import render_tile

TILE_PIXELS = 256
EXTENT = 4.0  # width (and height) of tile 0/0/0 in complex units
LEFT, TOP = -2.0, 2.0  # its top-left corner: real -2, imaginary +2
MAX_ZOOM = 40
#: The deepest tile (a deep view): 4 / 2^1000 is about 3.7e-301; its exact centre has 1,000 digits,
#: within the spec's 1,100.
MAX_DEEP_ZOOM = 1_000
#: The iteration rule: min(ITER_CAP, ITER_BASE + ITER_PER_ZOOM · z). explorer.js mirrors these.
ITER_BASE, ITER_PER_ZOOM, ITER_CAP = 200, 100, 5000
#: The cap beyond MAX_ZOOM (the rule continues from z = 41: 4,300 iterations, as at z = 40 plus 100).
DEEP_ITER_CAP = 30_000
#: Query parameters a tile takes; everything else about the picture follows from z/x/y.
QUERY_FIELDS = ("c", "colormap", "max_iter")
PNG_PREFIX = "xyz/"

_INDEX = re.compile(r"[0-9]{1,302}")  # 2^1000 has 302 digits


def default_max_iter(z: int) -> int:
    """Iterations for zoom ``z`` when the request names none (see the module docstring)."""
    return min(ITER_CAP if z <= MAX_ZOOM else DEEP_ITER_CAP, ITER_BASE + ITER_PER_ZOOM * z)


def tile_width(z: int) -> float:
    """Width of one tile at zoom ``z`` in complex units: 4 / 2^z (exact: a power of two)."""
    return EXTENT / 2**z


def tile_center(z: int, x: int, y: int) -> tuple[float, float]:
    """The complex coordinate (re, im) of the centre of tile z/x/y."""
    w = tile_width(z)
    return LEFT + (x + 0.5) * w, TOP - (y + 0.5) * w


def deep_tile_width(z: int) -> str:
    """4 / 2^z as an exact decimal string: 5^(z-2) / 10^(z-2)."""
    with localcontext() as ctx:
        ctx.prec = z + 20
        return canonical(Decimal(5 ** (z - 2)).scaleb(2 - z))


def deep_tile_center(z: int, x: int, y: int) -> list[str]:
    """The exact centre of tile z/x/y as decimal strings: -2 + (2x+1)/2^(z-1) and 2 - (2y+1)/2^(z-1)."""
    digits = z - 1  # (2x+1)/2^(z-1) = (2x+1)·5^(z-1) / 10^(z-1): exact in decimal
    with localcontext() as ctx:
        ctx.prec = 2 * z + 20  # wide enough that nothing below rounds
        return [canonical(Decimal(LEFT) + Decimal((2 * x + 1) * 5**digits).scaleb(-digits)),
                canonical(Decimal(TOP) - Decimal((2 * y + 1) * 5**digits).scaleb(-digits))]


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(re_min, re_max, im_min, im_max) of tile z/x/y."""
    w = tile_width(z)
    return LEFT + x * w, LEFT + (x + 1) * w, TOP - (y + 1) * w, TOP - y * w


def check_tile(z: int, x: int, y: int) -> None:
    """A tile outside the pyramid does not exist: ``NotFound`` naming the coordinate."""
    for name, value in (("z", z), ("x", x), ("y", y)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise NotFound(f"{name} must be a whole number", name)
    if not 0 <= z <= MAX_DEEP_ZOOM:
        raise NotFound(f"z must be between 0 and {MAX_DEEP_ZOOM}, got {z}", "z")
    last = 2**z - 1
    for name, value in (("x", x), ("y", y)):
        if not 0 <= value <= last:
            raise NotFound(f"{name} must be between 0 and {last} at zoom {z} (2^z tiles per side), got {value}",
                           name)


def xyz_spec(fractal: str, z: int, x: int, y: int, c: tuple[float, float] | list[float] | None = None,
             colormap: str | None = None, max_iter: int | None = None) -> RenderSpec:
    """The render spec of tile z/x/y: a normal 256×256 PNG spec, validated by ``parse_spec``.

    Raises ``NotFound`` for a tile outside the pyramid or an unknown fractal (no such tile) and
    ``SpecError`` for a bad c, colormap or max_iter (with the synchronous-render work limit:
    a tile is rendered while the client waits).
    """
    if fractal not in FRACTALS:
        raise NotFound(f"no tiles for fractal {str(fractal)[:40]!r}; the fractals are {', '.join(FRACTALS)}",
                       "fractal")
    check_tile(z, x, y)
    data = {
        "fractal": fractal,
        "center": list(tile_center(z, x, y)) if z <= MAX_ZOOM else deep_tile_center(z, x, y),
        "scale": tile_width(z) if z <= MAX_ZOOM else deep_tile_width(z),
        "width": TILE_PIXELS,
        "height": TILE_PIXELS,
        "tile_size": TILE_PIXELS,
        "max_iter": default_max_iter(z) if max_iter is None else max_iter,
        "format": "png",
        "colormap": colormap,
    }
    if fractal == "julia":
        if c is None:
            raise SpecError("c is required for julia tiles: add c=re,im to the query, e.g. c=-0.8,0.156", "c")
        data["c"] = c
    return parse_spec(data, sync=True)


def _index(text: str, name: str) -> int:
    """A path segment as a tile coordinate: plain decimal digits only (no sign, no spaces)."""
    if not isinstance(text, str) or not _INDEX.fullmatch(text):
        raise NotFound(f"{name} must be a whole number ≥ 0, got {str(text)[:20]!r}", name)
    return int(text)


def spec_from_request(fractal: str, z: str, x: str, y: str, query: Mapping[str, str]) -> RenderSpec:
    """The spec of ``/v1/tiles/{fractal}/{z}/{x}/{y}.png?c=…&colormap=…&max_iter=…`` (text as sent)."""
    for key in query:
        if key not in QUERY_FIELDS:
            raise SpecError(f"unknown parameter {key[:64]!r}; a tile takes {', '.join(QUERY_FIELDS)} "
                            "(the view follows from z/x/y)", key[:64])
    given = spec_from_query(query)  # text to numbers, the same rules as /v1/render.png
    zi, xi, yi = _index(z, "z"), _index(x, "x"), _index(y, "y")
    c = given.get("c") if fractal == "julia" else None
    return xyz_spec(fractal, zi, xi, yi, c=c, colormap=given.get("colormap"), max_iter=given.get("max_iter"))


def png_key(spec: RenderSpec) -> str:
    """Where a tile's PNG is cached: its content hash (colormap and max_iter included), nothing else."""
    return f"{PNG_PREFIX}{spec.content_hash()}.png"


def cached_png(spec: RenderSpec, store: ObjectStore) -> bytes | None:
    """The tile's PNG if an earlier request stored it."""
    try:
        return store.get(png_key(spec))
    except KeyNotFound:
        return None


def render_png(spec: RenderSpec, store: ObjectStore) -> bytes:
    """Render the tile through ``render_tile`` (its counts land in the store like any job's tile,
    and a stored one is reused), colour it, encode it, cache the PNG; returns the PNG.

    CPU-bound: callers run it on a worker pool, not on a request thread.
    """
    result = render_tile({"job": spec.content_hash(), "spec": spec.normalized(), "tile": 0}, store)
    counts = decode_tile(store.get(result["key"]))
    png = encode_png(colourize(counts.counts, counts.smooth, spec.max_iter, spec.colormap))
    store.put(png_key(spec), png, "image/png")
    return png


__all__ = [
    "DEEP_ITER_CAP", "EXTENT", "ITER_BASE", "ITER_CAP", "ITER_PER_ZOOM", "MAX_DEEP_ZOOM", "MAX_ZOOM", "QUERY_FIELDS",
    "TILE_PIXELS", "cached_png", "check_tile", "deep_tile_center", "deep_tile_width", "default_max_iter", "png_key",
    "render_png", "spec_from_request", "tile_bounds", "tile_center", "tile_width", "xyz_spec",
]
