"""Colormaps and smooth colouring of escape-time counts.

Maps are our own control colours, interpolated in OKLab (a perceptual space,
so mixes do not go muddy), pulled into the sRGB gamut by reducing chroma
only (lightness and hue survive), and resampled at equal perceptual steps
(equal lightness steps for sequential maps, equal OKLab distance for cyclic
ones) so no part of a map is stretched or squashed.

Colouring is pixel-local: a pixel's colour depends only on its own count and
smooth value, never on the rest of the image. So a picture coloured band by
band, or tile by tile, is identical to one coloured whole. The transfer from
smooth value to map position uses only +, *, / and sqrt, which IEEE 754
rounds exactly, so the colours are the same on every machine too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = [
    "COLORMAPS",
    "DEFAULT_COLORMAP",
    "colour_into",
    "colourize",
    "inside_colour",
    "lut",
    "oklab_to_srgb",
    "srgb_to_oklab",
]


@dataclass(frozen=True)
class _Colormap:
    stops: tuple[str, ...]  # sRGB hex, evenly spaced along the map
    cyclic: bool  # wraps around: last stop flows back into the first
    inside: tuple[int, int, int]  # points that never escape; not used by the map


# Our own control colours. "ocean" is the perceptually uniform one: its stops
# rise evenly in OKLab lightness, so lightness is monotonic along the map.
_MAPS: dict[str, _Colormap] = {
    "ocean": _Colormap(
        ("#0d1030", "#1e2f6e", "#1b5f93", "#16918f", "#58bc75", "#b7dc7c", "#fbf6c8"),
        cyclic=False,
        inside=(0, 0, 0),
    ),
    "fire": _Colormap(
        ("#1c0304", "#5e0b0c", "#a8240c", "#e0600f", "#f7a52a", "#fde17a", "#fffdf0"),
        cyclic=False,
        inside=(0, 0, 0),
    ),
    "grey": _Colormap(("#161616", "#f4f4f4"), cyclic=False, inside=(0, 0, 0)),
    "dusk": _Colormap(
        ("#e9e1d6", "#9fb3d6", "#5b6fbd", "#3c2c7a", "#2a1530", "#7a2a4c", "#c0615a", "#e3ab8e"),
        cyclic=True,
        inside=(0, 0, 0),
    ),
}

COLORMAPS: tuple[str, ...] = tuple(_MAPS)
"""Valid ``colormap`` names, for the spec validator."""

DEFAULT_COLORMAP = "ocean"

# Transfer constants (see colourize). _KNEE: smooth value that lands mid-map
# on the non-cyclic maps. _CYCLE: one trip round a cyclic map per this much
# of sqrt(smooth), i.e. cycles get longer as iteration counts grow, which
# keeps deep zooms (high counts, narrow range) readable and uncluttered.
_KNEE = 12.0
_CYCLE = 3.0
_TABLE_SIZE = 4096  # finer than 8-bit output: neighbouring entries differ by <= 1-2 per channel


# --- OKLab (Björn Ottosson, 2020; public formulas) ---------------------------

_M1 = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ]
)
_M2 = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ]
)
_M2_INV = np.linalg.inv(_M2)
_M1_INV = np.linalg.inv(_M1)


def _to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _to_gamma(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)


def srgb_to_oklab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (..., 3) -> OKLab (..., 3); L is perceived lightness in [0, 1]."""
    lms = _to_linear(np.asarray(rgb, dtype=np.float64)) @ _M1.T
    return np.cbrt(lms) @ _M2.T


def _oklab_to_linear(lab: np.ndarray) -> np.ndarray:
    return (np.asarray(lab, dtype=np.float64) @ _M2_INV.T) ** 3 @ _M1_INV.T


def oklab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """OKLab (..., 3) -> sRGB in [0, 1] (..., 3), clipped to the gamut."""
    return _to_gamma(_oklab_to_linear(lab))


def _into_gamut(lab: np.ndarray) -> np.ndarray:
    """Scale each colour's chroma down until it fits sRGB, keeping L and hue."""
    eps = 1e-9

    def fits(k: np.ndarray) -> np.ndarray:
        trial = np.concatenate([lab[:, :1], lab[:, 1:] * k[:, None]], axis=1)
        lin = _oklab_to_linear(trial)
        return np.all((lin >= -eps) & (lin <= 1 + eps), axis=1)

    ok = fits(np.ones(len(lab)))
    lo, hi = np.zeros(len(lab)), np.ones(len(lab))
    for _ in range(30):  # bisection on the chroma factor
        mid = (lo + hi) / 2
        f = fits(mid)
        lo = np.where(f, mid, lo)
        hi = np.where(f, hi, mid)
    k = np.where(ok, 1.0, lo)
    return np.concatenate([lab[:, :1], lab[:, 1:] * k[:, None]], axis=1)


def _hex(c: str) -> tuple[float, float, float]:
    c = c.lstrip("#")
    return tuple(int(c[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def _check_name(name: str) -> _Colormap:
    try:
        return _MAPS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown colormap {name!r}; valid colormaps are: {', '.join(COLORMAPS)}"
        ) from None


@lru_cache(maxsize=32)
def _lut_float(name: str, size: int) -> np.ndarray:
    cmap = _check_name(name)
    stops = srgb_to_oklab(np.array([_hex(s) for s in cmap.stops]))
    if cmap.cyclic:
        stops = np.vstack([stops, stops[:1]])
    # Fine path through the stops, piecewise linear in OKLab, in gamut.
    fine_n = 8192
    pos = np.linspace(0, len(stops) - 1, fine_n)
    path = np.stack([np.interp(pos, np.arange(len(stops)), stops[:, k]) for k in range(3)], 1)
    path = _into_gamut(path)
    if cmap.cyclic:
        # Resample at equal OKLab distance so every step looks the same size.
        param = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    else:
        # Sequential maps: resample at equal lightness steps, so lightness,
        # the cue the eye reads as "more", rises linearly along the map.
        param = path[:, 0]
        if not np.all(np.diff(param) > 0):
            raise AssertionError(f"colormap {name!r}: stops must rise in lightness")
    target = np.linspace(param[0], param[-1], size, endpoint=not cmap.cyclic)
    lab = np.stack([np.interp(target, param, path[:, k]) for k in range(3)], 1)
    return oklab_to_srgb(lab)


@lru_cache(maxsize=32)
def lut(name: str, size: int = 1024) -> np.ndarray:
    """The colormap as a (size, 3) uint8 table, start to end (read-only, cached).

    For a cyclic map entry 0 follows entry size-1.
    Raises ValueError naming the valid maps for an unknown name.
    """
    if size < 2:
        raise ValueError("lut size must be at least 2")
    table = np.rint(_lut_float(name, size) * 255).astype(np.uint8)
    table.flags.writeable = False
    return table


def inside_colour(name: str) -> tuple[int, int, int]:
    """Colour of points that never escape; the map itself never produces it."""
    return _check_name(name).inside


@lru_cache(maxsize=32)
def _table(name: str) -> np.ndarray:
    """The fine LUT with the inside colour appended as its last entry, so one gather colours every pixel."""
    table = np.vstack([lut(name, _TABLE_SIZE), np.array([inside_colour(name)], np.uint8)])
    table.flags.writeable = False
    return table


@lru_cache(maxsize=32)
def _packed_table(name: str) -> np.ndarray:
    """``_table`` with each colour packed into one uint32, ``R | G << 8 | B << 16``: one load a pixel."""
    rgb = _table(name).astype(np.uint32)
    table = rgb[:, 0] | rgb[:, 1] << 8 | rgb[:, 2] << 16
    table.flags.writeable = False
    return table


def _check_arrays(counts: np.ndarray, smooth: np.ndarray, max_iter: int) -> None:
    if counts.shape != smooth.shape or counts.ndim != 2:
        raise ValueError(
            f"counts and smooth must be 2-D arrays of one shape, got {counts.shape} and {smooth.shape}"
        )
    if max_iter < 1:
        raise ValueError("max_iter must be at least 1")


def colour_into(
    out: np.ndarray,
    counts: np.ndarray,
    smooth: np.ndarray,
    max_iter: int,
    colormap: str = DEFAULT_COLORMAP,
) -> None:
    """``colourize`` into ``out``, an (H, 3*W) uint8 view such as PNG rows after their filter
    byte, so a band's tiles are coloured straight into the encoder's buffer with no copy."""
    from fractally.picture.colour_kernel import colour_rows  # numba loads only where pixels are coloured

    cmap = _check_name(colormap)
    _check_arrays(counts, smooth, max_iter)
    if out.dtype != np.uint8 or out.shape != (counts.shape[0], 3 * counts.shape[1]):
        raise ValueError(f"out must be ({counts.shape[0]}, {3 * counts.shape[1]}) uint8, got {out.shape} {out.dtype}")
    if cmap.cyclic:
        scale = np.float32(1 / _CYCLE)
    else:
        scale = np.float32((max_iter + _KNEE) / max_iter * (_TABLE_SIZE - 1))
    colour_rows(_read_only(counts), _read_only(np.asarray(smooth, np.float32)), max_iter, cmap.cyclic,
                np.float32(_KNEE), scale, _packed_table(colormap), out)


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view: the colouring loop is compiled for read-only inputs (contiguous or not), so
    a writable array would match two of its signatures equally well."""
    view = array.view()
    view.flags.writeable = False
    return view


def colourize(
    counts: np.ndarray,
    smooth: np.ndarray,
    max_iter: int,
    colormap: str = DEFAULT_COLORMAP,
) -> np.ndarray:
    """Colour escape-time results: (H, W) counts and smooth values -> (H, W, 3) uint8 RGB.

    Escaped points take their colour from ``smooth`` (NaN and negatives taken as 0, values
    above ``max_iter`` as ``max_iter``) through a transfer, then the 4096-entry LUT (finer
    than 8-bit output, so gradients show no bands), all in float32:
    non-cyclic maps use ``t = s*(M+k) / (M*(s+k))`` with ``k`` = a fixed knee,
    which spreads the low counts that fill most of an image over the map and
    reaches the end at ``s = max_iter``; cyclic maps use ``frac(sqrt(s + 1)/3)``.
    Points with ``counts >= max_iter`` get ``inside_colour(colormap)``.
    Pixel-local, so colouring bands separately equals colouring the whole.
    The loop is ``fractally.picture.colour_kernel.colour_rows``.
    """
    counts, smooth = np.asarray(counts), np.asarray(smooth)
    _check_arrays(counts, smooth, max_iter)  # before the allocation below; colour_into checks the rest
    out = np.empty((counts.shape[0], counts.shape[1], 3), np.uint8)
    colour_into(out.reshape(counts.shape[0], -1), counts, smooth, max_iter, colormap)
    return out
