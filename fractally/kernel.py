"""Escape-time kernels (numba): the only place pixels are computed.

The arithmetic is API.md's exact rule, evaluated as written, in IEEE float64:

* pixel centre: ``center.x + ((j + 0.5 - width / 2) * scale) / width`` and
  ``center.y - ((i + 0.5 - height / 2) * scale) / width`` with (i, j) the pixel's
  index in the *whole image*, so a tile's pixels equal the same pixels of the whole;
* |z|² as ``x*x + y*y``; one step as ``x' = (x*x - y*y) + c.re``, ``y' = (2*x)*y + c.im``.

No ``fastmath`` and no FMA contraction (numba emits no ``contract`` flags unless
fastmath is on), so every machine, tile size and CPU gives the same bits.

Kernels fill arrays the caller owns (datashader style): no allocation
in the hot loop, and the same call serves a tile or a whole image.
"""

from __future__ import annotations

import math
import os

# LLVM's SLP vectoriser (off in numba by default) packs the kernel's eight
# written-out lanes into SIMD registers. It only regroups identical operations,
# so results are unchanged (tests compare bit for bit). numba reads its
# settings from the environment when it compiles, hence the variable here.
os.environ.setdefault("NUMBA_SLP_VECTORIZE", "1")

import numba  # noqa: E402
import numpy as np

#: One decorator for every kernel: compiled, GIL released, cached on disk.
ngjit = numba.njit(nogil=True, cache=True, fastmath=False, error_model="numpy")


@ngjit
def _smooth_value(n: int, x2: float, y2: float, log_r: float, max_iter: int) -> float:
    """Continuous count n + 1 - log2(log|z| / log R): within one of n, continuous across n, in [0, max_iter]."""
    if n >= max_iter:
        return float(max_iter)
    mod2 = x2 + y2
    if mod2 <= 1.0:  # cannot happen after an escape with R >= 2; keeps log() safe
        return float(n)
    v = n + 1.0 - math.log2((0.5 * math.log(mod2)) / log_r)
    if v < 0.0:
        return 0.0
    if v > max_iter:
        return float(max_iter)
    return v


@numba.njit(nogil=True, cache=True, inline="always")
def _step(x: float, y: float, n: int, cx: float, cy: float, r2: float):
    """One step of API.md's rule for one lane; a lane that has escaped stays frozen."""
    xx = x * x
    yy = y * y
    go = xx + yy <= r2
    nx = (xx - yy) + cx
    ny = (2.0 * x) * y + cy
    return (nx if go else x), (ny if go else y), (n + 1 if go else n), go


@ngjit
def escape_time(julia: bool, c_re: float, c_im: float, center_x: float, center_y: float,
                scale: float, width: int, height: int, max_iter: int, escape_radius: float,
                row0: int, col0: int, counts: np.ndarray, smooth: np.ndarray) -> None:
    """Fill ``counts`` (uint32) and ``smooth`` (float32) for the window at (row0, col0) of the image.

    Eight neighbouring pixels of a row are iterated in lockstep, written out lane
    by lane so LLVM's SLP vectoriser packs them into SIMD registers (two AVX2
    vectors, or one AVX-512 vector) with no branches between the lanes. A frozen
    lane repeats its escaped z, so every lane's count is exactly the scalar rule's.
    Tail lanes past the window's edge repeat its last pixel and are not stored.
    """
    rows, cols = counts.shape
    r2 = escape_radius * escape_radius
    log_r = math.log(escape_radius)
    half_w = width / 2
    half_h = height / 2
    last = col0 + cols - 1
    for ii in range(rows):
        py = center_y - (((row0 + ii) + 0.5 - half_h) * scale) / width
        for start in range(0, cols, 8):
            j = col0 + start
            p0 = center_x + ((min(j, last) + 0.5 - half_w) * scale) / width
            p1 = center_x + ((min(j + 1, last) + 0.5 - half_w) * scale) / width
            p2 = center_x + ((min(j + 2, last) + 0.5 - half_w) * scale) / width
            p3 = center_x + ((min(j + 3, last) + 0.5 - half_w) * scale) / width
            p4 = center_x + ((min(j + 4, last) + 0.5 - half_w) * scale) / width
            p5 = center_x + ((min(j + 5, last) + 0.5 - half_w) * scale) / width
            p6 = center_x + ((min(j + 6, last) + 0.5 - half_w) * scale) / width
            p7 = center_x + ((min(j + 7, last) + 0.5 - half_w) * scale) / width
            if julia:
                x0, x1, x2, x3, x4, x5, x6, x7 = p0, p1, p2, p3, p4, p5, p6, p7
                y0 = y1 = y2 = y3 = y4 = y5 = y6 = y7 = py
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = c_re
                b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = c_im
            else:
                x0 = x1 = x2 = x3 = x4 = x5 = x6 = x7 = 0.0
                y0 = y1 = y2 = y3 = y4 = y5 = y6 = y7 = 0.0
                a0, a1, a2, a3, a4, a5, a6, a7 = p0, p1, p2, p3, p4, p5, p6, p7
                b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = py
            n0 = n1 = n2 = n3 = n4 = n5 = n6 = n7 = 0
            for _ in range(max_iter):
                x0, y0, n0, g0 = _step(x0, y0, n0, a0, b0, r2)
                x1, y1, n1, g1 = _step(x1, y1, n1, a1, b1, r2)
                x2, y2, n2, g2 = _step(x2, y2, n2, a2, b2, r2)
                x3, y3, n3, g3 = _step(x3, y3, n3, a3, b3, r2)
                x4, y4, n4, g4 = _step(x4, y4, n4, a4, b4, r2)
                x5, y5, n5, g5 = _step(x5, y5, n5, a5, b5, r2)
                x6, y6, n6, g6 = _step(x6, y6, n6, a6, b6, r2)
                x7, y7, n7, g7 = _step(x7, y7, n7, a7, b7, r2)
                if not (g0 | g1 | g2 | g3 | g4 | g5 | g6 | g7):
                    break
            ns = (n0, n1, n2, n3, n4, n5, n6, n7)
            xs = (x0, x1, x2, x3, x4, x5, x6, x7)
            ys = (y0, y1, y2, y3, y4, y5, y6, y7)
            for k in range(min(8, cols - start)):
                counts[ii, start + k] = ns[k]
                smooth[ii, start + k] = _smooth_value(ns[k], xs[k] * xs[k], ys[k] * ys[k], log_r, max_iter)


def render_window(spec, row0: int, col0: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts and smooth values for a window of ``spec``'s image (allocates the outputs)."""
    counts = np.empty((rows, cols), dtype=np.uint32)
    smooth = np.empty((rows, cols), dtype=np.float32)
    c_re, c_im = spec.c if spec.c is not None else (0.0, 0.0)
    escape_time(spec.julia, c_re, c_im, spec.center[0], spec.center[1], spec.scale,
                spec.width, spec.height, spec.max_iter, spec.escape_radius, row0, col0, counts, smooth)
    return counts, smooth
