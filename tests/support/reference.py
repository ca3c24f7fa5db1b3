"""Slow, obvious numpy float64 implementations of the documented rules, independent of fractally's code.

* ``reference_counts``/``reference_escape``: docs/api.md's escape-time rule (counts), and the README's
  smooth value ``n + 1 - log2(log|z| / log R)`` of the final z;
* ``reference_lut``/``reference_colours``: the colouring as ``fractally/picture/colour.py``'s docstrings
  describe it: control colours interpolated in OKLab (Ottosson's published matrices, both ways),
  chroma reduced into the sRGB gamut keeping lightness and hue, resampled at equal lightness steps
  (sequential maps) into a 4096-entry table; the transfer ``t = s(M+k) / (M(s+k))`` of the smooth value
  ``s`` (NaN and negatives as 0, above M as M) picks the nearest entry; points with ``count >= M`` are
  the inside colour. Written from that text, not from the module's code, and in float64 throughout.
* ``exact_deep_count``: a deep view's pixel counted exactly as docs/api.md states the rule, in mpmath
  (not the gmpy2 the service uses) at the view's bits plus guard bits.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np


def _iterate(spec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of the whole image, one numpy operation per step, and each pixel's final z (re, im)."""
    w, h = spec.width, spec.height
    j = np.arange(w, dtype=np.float64)
    i = np.arange(h, dtype=np.float64)
    px = spec.center[0] + ((j + 0.5 - w / 2) * spec.scale) / w
    py = spec.center[1] - ((i + 0.5 - h / 2) * spec.scale) / w
    x, y = np.meshgrid(px, py)
    if spec.fractal == "julia":
        cx = np.full_like(x, spec.c[0])
        cy = np.full_like(y, spec.c[1])
    else:
        cx, cy = x, y
        x, y = np.zeros_like(cx), np.zeros_like(cy)
    r2 = spec.escape_radius * spec.escape_radius
    n = np.zeros((h, w), dtype=np.uint32)
    active = np.ones((h, w), dtype=bool)
    for _ in range(spec.max_iter):
        active &= (x * x + y * y) <= r2
        if not active.any():
            break
        nx = (x * x - y * y) + cx
        ny = (2 * x) * y + cy
        x = np.where(active, nx, x)
        y = np.where(active, ny, y)
        n += active
    return n, x, y


def reference_escape(spec) -> tuple[np.ndarray, np.ndarray]:
    """Escape-time counts and smooth values (float64, ``max_iter`` inside) of the whole image."""
    n, x, y = _iterate(spec)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # inside points: no escaped z
        log_z = 0.5 * np.log(x * x + y * y)
        smooth = n + 1.0 - np.log2(log_z / np.log(spec.escape_radius))
    return n, np.where(n >= spec.max_iter, float(spec.max_iter), smooth)


def reference_counts(spec) -> np.ndarray:
    """Escape-time counts of the whole image."""
    return _iterate(spec)[0]


# --- colour ------------------------------------------------------------------------------------

#: The sequential maps' control colours (sRGB, evenly spaced along the map) and the knee of the
#: transfer: the maps' definition, as given in fractally/picture/colour.py (data, not code).
CONTROL_COLOURS = {
    "ocean": ("#0d1030", "#1e2f6e", "#1b5f93", "#16918f", "#58bc75", "#b7dc7c", "#fbf6c8"),
    "fire": ("#1c0304", "#5e0b0c", "#a8240c", "#e0600f", "#f7a52a", "#fde17a", "#fffdf0"),
    "grey": ("#161616", "#f4f4f4"),
}
KNEE = 12.0
TABLE_ENTRIES = 4096
INSIDE = (0, 0, 0)

# Björn Ottosson, "A perceptual color space for image processing" (2020): linear sRGB -> LMS,
# cube root, -> Lab; and the published inverse matrices.
_RGB_TO_LMS = np.array([[0.4122214708, 0.5363325363, 0.0514459929],
                        [0.2119034982, 0.6806995451, 0.1073969566],
                        [0.0883024619, 0.2817188376, 0.6299787005]])
_LMS_TO_LAB = np.array([[0.2104542553, 0.7936177850, -0.0040720468],
                        [1.9779984951, -2.4285922050, 0.4505937099],
                        [0.0259040371, 0.7827717662, -0.8086757660]])
_LAB_TO_LMS = np.array([[1.0, 0.3963377774, 0.2158037573],
                        [1.0, -0.1055613458, -0.0638541728],
                        [1.0, -0.0894841775, -1.2914855480]])
_LMS_TO_RGB = np.array([[4.0767416621, -3.3077115913, 0.2309699292],
                        [-1.2684380046, 2.6097574011, -0.3413193965],
                        [-0.0041960863, -0.7034186147, 1.7076147010]])


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def _lab_to_linear(lab: np.ndarray) -> np.ndarray:
    return (lab @ _LAB_TO_LMS.T) ** 3 @ _LMS_TO_RGB.T


def _in_gamut(lab: np.ndarray) -> np.ndarray:
    """Each colour with its chroma (a, b) scaled down by the largest factor in [0, 1] that fits sRGB."""
    def fits(factor: np.ndarray) -> np.ndarray:
        rgb = _lab_to_linear(np.column_stack([lab[:, 0], lab[:, 1:] * factor[:, None]]))
        return np.all((rgb >= -1e-9) & (rgb <= 1 + 1e-9), axis=1)

    low, high = np.zeros(len(lab)), np.ones(len(lab))
    whole = fits(high)
    for _ in range(50):
        middle = (low + high) / 2
        ok = fits(middle)
        low, high = np.where(ok, middle, low), np.where(ok, high, middle)
    factor = np.where(whole, 1.0, low)
    return np.column_stack([lab[:, 0], lab[:, 1:] * factor[:, None]])


def reference_lut(colormap: str, entries: int = TABLE_ENTRIES) -> np.ndarray:
    """A sequential map's (entries, 3) uint8 table: at equal OKLab-lightness steps from the first control
    colour to the last, the point of the piecewise-linear OKLab path with that lightness, into the gamut."""
    hexes = CONTROL_COLOURS[colormap]
    rgb = np.array([[int(h[k:k + 2], 16) / 255 for k in (1, 3, 5)] for h in hexes])
    stops = np.cbrt(_srgb_to_linear(rgb) @ _RGB_TO_LMS.T) @ _LMS_TO_LAB.T
    lightness = stops[:, 0]
    assert np.all(np.diff(lightness) > 0), "a sequential map's control colours rise in lightness"
    wanted = np.linspace(lightness[0], lightness[-1], entries)
    segment = np.clip(np.searchsorted(lightness, wanted, side="right") - 1, 0, len(stops) - 2)
    along = (wanted - lightness[segment]) / (lightness[segment + 1] - lightness[segment])
    lab = stops[segment] + along[:, None] * (stops[segment + 1] - stops[segment])
    return np.rint(_linear_to_srgb(_lab_to_linear(_in_gamut(lab))) * 255).astype(np.uint8)


def reference_colours(counts: np.ndarray, smooth: np.ndarray, max_iter: int, colormap: str) -> np.ndarray:
    """(H, W, 3) uint8: each escaped pixel the table entry nearest its transfer, inside pixels ``INSIDE``."""
    table = reference_lut(colormap)
    s = np.clip(np.nan_to_num(np.asarray(smooth, np.float64), nan=0.0), 0.0, max_iter)
    t = s * (max_iter + KNEE) / (max_iter * (s + KNEE))
    image = table[np.floor(t * (len(table) - 1) + 0.5).astype(np.int64)]
    image[counts >= max_iter] = INSIDE
    return image


def exact_deep_count(spec: Any, i: int, j: int, guard_bits: int = 128) -> int:
    """docs/api.md's iteration count of pixel (i, j) of a deep view in mpmath at the view's bits plus
    ``guard_bits``: the pixel centre from the decimal coordinates, z ← z² + c as written."""
    import mpmath

    deep = spec.deep
    spacing = Decimal(deep.scale) / spec.width
    with mpmath.workprec(int(-spacing.adjusted() * 3.33) + guard_bits):
        scale, half = mpmath.mpf(deep.scale), mpmath.mpf(0.5)
        x = mpmath.mpf(deep.center[0]) + ((j + half - mpmath.mpf(spec.width) / 2) * scale) / spec.width
        y = mpmath.mpf(deep.center[1]) - ((i + half - mpmath.mpf(spec.height) / 2) * scale) / spec.width
        if spec.julia:
            zr, zi, cr, ci = x, y, mpmath.mpf(deep.c[0]), mpmath.mpf(deep.c[1])
        else:
            zr, zi, cr, ci = mpmath.mpf(0), mpmath.mpf(0), x, y
        r2 = mpmath.mpf(spec.escape_radius) ** 2
        n = 0
        while n < spec.max_iter and zr * zr + zi * zi <= r2:
            zr, zi = zr * zr - zi * zi + cr, 2 * zr * zi + ci
            n += 1
    return n


def minibrot_nucleus(start: tuple[str, str], bits: int, max_period: int = 5_000) -> tuple[str, str, int, float]:
    """The nucleus of the minibrot nearest ``start`` (mpmath): (re, im, period, log10 of its size).

    The period is the step at which |z| is smallest before escaping (the atom period), the nucleus
    Newton's method on z_p(c) = 0 from ``start``, and the size the usual estimate 1/|b·l²| with
    l = ∏ 2z_j and b = Σ 1/l_j over the period (Heiland-Allen's).
    """
    import mpmath

    with mpmath.workprec(bits):
        c = mpmath.mpc(mpmath.mpf(start[0]), mpmath.mpf(start[1]))
        z, smallest, period = mpmath.mpc(0), None, 0
        for n in range(1, max_period):
            z = z * z + c
            if smallest is None or abs(z) < smallest:
                smallest, period = abs(z), n
            if abs(z) > 2:
                break
        for _ in range(60):
            z, dz = mpmath.mpc(0), mpmath.mpc(0)
            for _ in range(period):
                dz = 2 * z * dz + 1
                z = z * z + c
            step = z / dz
            c -= step
            if abs(step) < mpmath.mpf(2) ** (20 - bits):
                break
        z, l, b = mpmath.mpc(0), mpmath.mpc(1), mpmath.mpc(1)
        for _ in range(1, period):
            z = z * z + c
            l = 2 * z * l
            b += 1 / l
        digits = int(bits / 3.33) - 10
        return (mpmath.nstr(c.real, digits, min_fixed=-2, max_fixed=2), mpmath.nstr(c.imag, digits, min_fixed=-2,
                max_fixed=2), period, float(mpmath.log10(abs(1 / (b * l * l)))))


def moved_right(view: dict, fraction: int = 10) -> dict:
    """``view`` with its centre moved right by ``1/fraction`` of its width, every digit kept (a view near
    a minibrot as a click would centre it, rather than on its nucleus)."""
    from decimal import localcontext

    with localcontext() as exact:
        exact.prec = 2_000
        shift = Decimal(view["scale"]) / fraction
        return {**view, "center": [str(Decimal(view["center"][0]) + shift), view["center"][1]]}
