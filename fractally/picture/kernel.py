"""Escape-time kernels (numba): the only place pixels are computed.

The arithmetic is docs/api.md's exact rule, evaluated as written, in IEEE float64:

* pixel centre: ``center.x + ((j + 0.5 - width / 2) * scale) / width`` and
  ``center.y - ((i + 0.5 - height / 2) * scale) / width`` with (i, j) the pixel's
  index in the *whole image*, so a tile's pixels equal the same pixels of the whole;
* |z|² as ``x*x + y*y``; one step as ``x' = (x*x - y*y) + c.re``, ``y' = (2*x)*y + c.im``.

No ``fastmath`` and no FMA contraction (numba emits no ``contract`` flags unless
fastmath is on, and LLVM never fuses without them), so every machine, tile size and
CPU gives the same bits. ``tests/picture/test_kernel.py`` checks the counts against an
independent numpy reference and the machine code for the absence of FMA.

How the kernel is fast (read this first)
----------------------------------------
A vector is four neighbouring pixels of a row (four float64 lanes: one AVX2
register). Five vectors are *in flight*: one loop steps all twenty lanes, so the
dependency chain of one vector (multiply, add, compare, then the select that
freezes escaped lanes: 10 to 14 cycles a step) overlaps with the other four and
the multiply/add units stay busy. The lanes are written out (``_step4`` on
4-tuples) and LLVM's SLP vectoriser, which numba leaves off by default and this
module switches on through ``NUMBA_SLP_VECTORIZE``, packs each 4-tuple into one
vector register. It only regroups identical operations, so the bits are those of
the scalar rule.

Within a vector the lanes run in lockstep: a lane that escapes is *frozen* (its z
and count stop changing, see ``_step``) until its three neighbours are done too.
But the vectors are independent: every ``BLOCK`` steps, each vector whose four
lanes have all escaped (or reached ``max_iter``) writes its results and *refills*
with the next four pixels, while the others go on. The lockstep C reference in
``bench/c_kernel.c`` keeps its sixteen pixels together until the last one escapes;
on the benchmark's julia view only 35 % of its lane-steps do useful work, against
61 % here, which is why this loop is level with it although slower per lane-step
(it freezes lanes, and the freezing select sits on the dependency chain). The C
reference with this same strategy, ``bench/c_refill.c``, is faster than this loop
(docs/benchmarks.md, "Kernel"): numba's version spills registers in the hot loop.

The smooth value (float32, for colouring without bands) is
``n + 1 - log2(log|z| / log R)`` of the final z. Instead of two libm logarithms
per pixel (a third of the time of the old kernel), the iteration only stores |z|²,
and a second, vectorised pass (``_finish_strip``) computes
``n + 1 - log2(log2|z|² / (2 log2 R))`` with ``_log2_split``/``_log2_mantissa``: the
exponent from the float's bits, the mantissa through the atanh series. It uses only
+, -, *, / (so it is the same on every machine, unlike libm), is continuous, and
is within 1e-10 of the libm formula before rounding to float32.

Both passes work on strips of at most ``STRIP_PIXELS`` pixels so the scratch
arrays stay in the core's cache, whatever the window size. Columns are padded to
a multiple of four by repeating the last one (the padding lanes' results are
never copied out); at a strip's end the vectors that run out of pixels idle
until the last ones finish.

Measured and rejected (docs/benchmarks.md, "Kernel", has the figures): eight or
sixteen pixels in lockstep per vector (fewer useful lane-steps: 46 %, 35 %);
refilling single lanes instead of whole vectors (the scalar bookkeeping per pixel
costs more than the idle lanes save); three, four, six or eight vectors in flight
(four hides the latency on AVX2 but not with AVX-512's masked adds; five is best
or level-best on both); blocks of 6, 12 or 16 steps; an integer count (on AVX2
LLVM narrows it to 32 bits and repacks it every step). The SLP vectoriser is a
heuristic, so ``tests/picture/test_kernel.py`` checks the machine code for packed
multiplies as well as for the absence of FMA.

The float32 opt-in (``escape_time_float32``, a spec's ``precision: "float32"``)
has the same layout with eight float32 lanes per vector (``_iterate_strip32``):
an AVX2 register holds eight, so each instruction steps twice the pixels, and on
the benchmark's julia view it does 1.4 to 1.5 times the pixel-iterations per
second of the float64 kernel, although eight lanes in lockstep waste more
lane-steps. Its counts must be float32 too: with float64 counts every step
widens the 8-lane mask into two 4-lane registers, and it came out at 0.8 times
float64 (so did four float32 lanes, at 1.0 times: half of each register idle).
2, 3, 4, 5 and 6 vectors of eight: five is best with AVX-512, 3 to 5 are level on AVX2.

Kernels fill arrays the caller owns (datashader style): the same call serves a tile
or a whole image.
"""

from __future__ import annotations

import math
import os

# LLVM's SLP vectoriser (off in numba by default) packs the kernel's written-out
# lanes into SIMD registers. numba reads its settings from the environment when
# it compiles, hence the variable here, before numba is imported.
os.environ.setdefault("NUMBA_SLP_VECTORIZE", "1")

import numba  # noqa: E402
import numpy as np  # noqa: E402

#: One decorator for every kernel: compiled, GIL released, cached on disk.
ngjit = numba.njit(nogil=True, cache=True, fastmath=False, error_model="numpy")
#: Helpers inlined into their caller at the numba IR level (so SLP sees all lanes).
inline = numba.njit(nogil=True, cache=True, fastmath=False, error_model="numpy", inline="always")

LANES = 4  # pixels per vector: one AVX2 register of float64 (five vectors are written out in _iterate_strip)
BLOCK = 8  # steps between looks at which vectors are done (a finished lane waits < BLOCK steps)
STRIP_PIXELS = 1 << 16  # scratch per strip: 12 bytes a pixel, 768 KiB (L2); a 256x256 tile is one strip
CHUNK = 256  # pixels per pass of the smooth computation: its temporaries stay in L1


# --------------------------------------------------------------------------- iteration


@inline
def _step(x, y, n, cx, cy, r2):
    """One step of docs/api.md's rule for one lane; a lane that has escaped stays frozen.

    ``go`` is the rule's test |z|² ≤ R² on the current z: if it holds, z takes one
    step and n counts it; if not, z and n keep their values, so after the last
    step z is the escaped z and n its count. ``x + x`` is ``2*x`` exactly (both
    are exact doublings, with the same overflow).

    n is a float64 (exact up to 2**53) and counts by adding 1.0 or 0.0: LLVM turns
    that into a mask AND plus an add (one masked add on AVX-512). An integer
    ``n + 1 if go else n`` came out on AVX2 as four extra shuffles per vector and step.
    """
    xx = x * x
    yy = y * y
    go = xx + yy <= r2
    nx = (xx - yy) + cx
    ny = (x + x) * y + cy
    return (nx if go else x), (ny if go else y), n + (1.0 if go else 0.0)


@inline
def _step4(x, y, n, cx, cy, r2):
    """``_step`` on a vector: four lanes given as 4-tuples (SLP makes it one register)."""
    x0, y0, n0 = _step(x[0], y[0], n[0], cx[0], cy[0], r2)
    x1, y1, n1 = _step(x[1], y[1], n[1], cx[1], cy[1], r2)
    x2, y2, n2 = _step(x[2], y[2], n[2], cx[2], cy[2], r2)
    x3, y3, n3 = _step(x[3], y[3], n[3], cx[3], cy[3], r2)
    return (x0, x1, x2, x3), (y0, y1, y2, y3), (n0, n1, n2, n3)


@inline
def _mod2_4(x, y):
    """|z|² = x*x + y*y of each lane of a vector."""
    return (x[0] * x[0] + y[0] * y[0], x[1] * x[1] + y[1] * y[1],
            x[2] * x[2] + y[2] * y[2], x[3] * x[3] + y[3] * y[3])


@inline
def _escaped4(mod2, r2):
    """True when no lane of a vector has |z|² ≤ R² any more (all four are frozen)."""
    return not ((mod2[0] <= r2) | (mod2[1] <= r2) | (mod2[2] <= r2) | (mod2[3] <= r2))


@inline
def _store4(at, n, mod2, nbuf, mbuf):
    """Write a finished vector: counts to ``nbuf``, final |z|² to ``mbuf``, from index ``at``."""
    for k in range(LANES):
        nbuf[at + k] = n[k]
        mbuf[at + k] = mod2[k]


@inline
def _load4(row, col, px, py, julia, c_re, c_im, zero, idle):
    """The state of the four pixels at (row, col..col+3) of the strip: (scratch index, x, y, cx, cy, n).

    Past the strip's last row the vector becomes idle: index -1 and z = ``idle``
    (infinite, so the lanes are frozen from the start). ``zero`` and ``idle`` carry
    the kernel's float type.
    """
    counts0 = (0.0, 0.0, 0.0, 0.0)
    if row >= len(py):
        none = (zero, zero, zero, zero)
        return -1, (idle, idle, idle, idle), (idle, idle, idle, idle), none, none, counts0
    at = row * len(px) + col
    p = (px[col], px[col + 1], px[col + 2], px[col + 3])
    q = py[row]
    qs = (q, q, q, q)
    if julia:  # z0 = pixel, c fixed
        return at, p, qs, (c_re, c_re, c_re, c_re), (c_im, c_im, c_im, c_im), counts0
    zs = (zero, zero, zero, zero)  # mandelbrot: z0 = 0, c = pixel
    return at, zs, zs, p, qs, counts0


@inline
def _next(row, col, stride):
    """The position of the group after (row, col): four columns on, or the next row."""
    return (row, col + LANES) if col + LANES < stride else (row + 1, 0)


def _strip_iterator(load, next_, step, mod2_, escaped, store):
    """The strip loop, compiled for one vector width: the helpers say how wide a vector is
    (``_load4``... four float64 lanes; ``_load8``... eight float32 lanes), the loop is the same."""

    @ngjit
    def iterate_strip(julia, c_re, c_im, px, py, max_iter, r2, zero, idle, nbuf, mbuf):
        """Run every pixel of a strip to its count: five vectors in flight, each refilled when done.

        ``px``: the x (julia) or c.re (mandelbrot) of each padded column, a multiple of
        the lane count long (tail columns repeat the last real one); ``py``: one per row. Fills
        ``nbuf`` (counts) and ``mbuf`` (final |z|²), both ``len(py) * len(px)``, row-major.

        The vectors are a, b, c, d, e; ``s*`` counts the steps a vector has taken since
        its pixels were loaded (its lanes' counts are at most that), ``o*`` is where its
        results go (-1: idle), and (row, col) is the next group of pixels to load.
        Each round runs ``k`` steps of all the lanes with no test in between
        (``k`` = ``BLOCK``, or fewer so that no vector passes ``max_iter``); then every
        vector that is finished is stored and reloaded, while the others go on.
        """
        stride = len(px)
        row = col = 0
        oa, xa, ya, ca, da, na = load(row, col, px, py, julia, c_re, c_im, zero, idle)
        row, col = next_(row, col, stride)
        ob, xb, yb, cb, db, nb = load(row, col, px, py, julia, c_re, c_im, zero, idle)
        row, col = next_(row, col, stride)
        oc, xc, yc, cc, dc, nc = load(row, col, px, py, julia, c_re, c_im, zero, idle)
        row, col = next_(row, col, stride)
        od, xd, yd, cd, dd, nd = load(row, col, px, py, julia, c_re, c_im, zero, idle)
        row, col = next_(row, col, stride)
        oe, xe, ye, ce, de, ne = load(row, col, px, py, julia, c_re, c_im, zero, idle)
        row, col = next_(row, col, stride)
        sa = sb = sc = sd = se = 0
        while oa >= 0 or ob >= 0 or oc >= 0 or od >= 0 or oe >= 0:
            k = BLOCK
            if oa >= 0:
                k = min(k, max_iter - sa)
            if ob >= 0:
                k = min(k, max_iter - sb)
            if oc >= 0:
                k = min(k, max_iter - sc)
            if od >= 0:
                k = min(k, max_iter - sd)
            if oe >= 0:
                k = min(k, max_iter - se)
            for _ in range(k):  # the hot loop: 5 independent vectors
                xa, ya, na = step(xa, ya, na, ca, da, r2)
                xb, yb, nb = step(xb, yb, nb, cb, db, r2)
                xc, yc, nc = step(xc, yc, nc, cc, dc, r2)
                xd, yd, nd = step(xd, yd, nd, cd, dd, r2)
                xe, ye, ne = step(xe, ye, ne, ce, de, r2)
            sa += k
            sb += k
            sc += k
            sd += k
            se += k
            if oa >= 0:
                mod2 = mod2_(xa, ya)
                if sa >= max_iter or escaped(mod2, r2):
                    store(oa, na, mod2, nbuf, mbuf)
                    oa, xa, ya, ca, da, na = load(row, col, px, py, julia, c_re, c_im, zero, idle)
                    row, col = next_(row, col, stride)
                    sa = 0
            if ob >= 0:
                mod2 = mod2_(xb, yb)
                if sb >= max_iter or escaped(mod2, r2):
                    store(ob, nb, mod2, nbuf, mbuf)
                    ob, xb, yb, cb, db, nb = load(row, col, px, py, julia, c_re, c_im, zero, idle)
                    row, col = next_(row, col, stride)
                    sb = 0
            if oc >= 0:
                mod2 = mod2_(xc, yc)
                if sc >= max_iter or escaped(mod2, r2):
                    store(oc, nc, mod2, nbuf, mbuf)
                    oc, xc, yc, cc, dc, nc = load(row, col, px, py, julia, c_re, c_im, zero, idle)
                    row, col = next_(row, col, stride)
                    sc = 0
            if od >= 0:
                mod2 = mod2_(xd, yd)
                if sd >= max_iter or escaped(mod2, r2):
                    store(od, nd, mod2, nbuf, mbuf)
                    od, xd, yd, cd, dd, nd = load(row, col, px, py, julia, c_re, c_im, zero, idle)
                    row, col = next_(row, col, stride)
                    sd = 0
            if oe >= 0:
                mod2 = mod2_(xe, ye)
                if se >= max_iter or escaped(mod2, r2):
                    store(oe, ne, mod2, nbuf, mbuf)
                    oe, xe, ye, ce, de, ne = load(row, col, px, py, julia, c_re, c_im, zero, idle)
                    row, col = next_(row, col, stride)
                    se = 0

    return iterate_strip


_iterate_strip = _strip_iterator(_load4, _next, _step4, _mod2_4, _escaped4, _store4)


# --------------------------------------------------------------------------- the float32 opt-in
#
# The same layout as above (five vectors in flight, refilled as they finish) with
# eight float32 lanes per vector: one AVX2 register holds eight, so each step does
# twice the lanes for the same instructions. The counts are float32 as well
# (exact up to 2**24, far above MAX_ITER): with float64 counts, as in the first
# 8-lane attempt, every step widened the 8-lane mask to two 4-lane registers and
# the shuffles ate the gain.

LANES32 = 8  # pixels per float32 vector: one AVX2 register of float32
_ONE32 = np.float32(1.0)
_ZERO32 = np.float32(0.0)


@inline
def _step32(x, y, n, cx, cy, r2):
    """``_step`` for one float32 lane with a float32 count (a float64 1.0 would widen n)."""
    xx = x * x
    yy = y * y
    go = xx + yy <= r2
    nx = (xx - yy) + cx
    ny = (x + x) * y + cy
    return (nx if go else x), (ny if go else y), n + (_ONE32 if go else _ZERO32)


@inline
def _step8(x, y, n, cx, cy, r2):
    """``_step32`` on a vector: eight lanes given as 8-tuples (SLP makes it one register)."""
    x0, y0, n0 = _step32(x[0], y[0], n[0], cx[0], cy[0], r2)
    x1, y1, n1 = _step32(x[1], y[1], n[1], cx[1], cy[1], r2)
    x2, y2, n2 = _step32(x[2], y[2], n[2], cx[2], cy[2], r2)
    x3, y3, n3 = _step32(x[3], y[3], n[3], cx[3], cy[3], r2)
    x4, y4, n4 = _step32(x[4], y[4], n[4], cx[4], cy[4], r2)
    x5, y5, n5 = _step32(x[5], y[5], n[5], cx[5], cy[5], r2)
    x6, y6, n6 = _step32(x[6], y[6], n[6], cx[6], cy[6], r2)
    x7, y7, n7 = _step32(x[7], y[7], n[7], cx[7], cy[7], r2)
    return ((x0, x1, x2, x3, x4, x5, x6, x7), (y0, y1, y2, y3, y4, y5, y6, y7),
            (n0, n1, n2, n3, n4, n5, n6, n7))


@inline
def _mod2_8(x, y):
    """|z|² = x*x + y*y of each lane of an 8-lane vector."""
    return (x[0] * x[0] + y[0] * y[0], x[1] * x[1] + y[1] * y[1],
            x[2] * x[2] + y[2] * y[2], x[3] * x[3] + y[3] * y[3],
            x[4] * x[4] + y[4] * y[4], x[5] * x[5] + y[5] * y[5],
            x[6] * x[6] + y[6] * y[6], x[7] * x[7] + y[7] * y[7])


@inline
def _escaped8(mod2, r2):
    """True when no lane of an 8-lane vector has |z|² ≤ R² any more."""
    return not ((mod2[0] <= r2) | (mod2[1] <= r2) | (mod2[2] <= r2) | (mod2[3] <= r2)
                | (mod2[4] <= r2) | (mod2[5] <= r2) | (mod2[6] <= r2) | (mod2[7] <= r2))


@inline
def _store8(at, n, mod2, nbuf, mbuf):
    """Write a finished 8-lane vector: counts to ``nbuf``, final |z|² to ``mbuf``, from index ``at``."""
    for k in range(LANES32):
        nbuf[at + k] = n[k]
        mbuf[at + k] = mod2[k]


@inline
def _load8(row, col, px, py, julia, c_re, c_im, zero, idle):
    """``_load4`` for eight float32 pixels at (row, col..col+7): (scratch index, x, y, cx, cy, n)."""
    counts0 = (_ZERO32, _ZERO32, _ZERO32, _ZERO32, _ZERO32, _ZERO32, _ZERO32, _ZERO32)
    if row >= len(py):
        none = (zero, zero, zero, zero, zero, zero, zero, zero)
        idles = (idle, idle, idle, idle, idle, idle, idle, idle)
        return -1, idles, idles, none, none, counts0
    at = row * len(px) + col
    p = (px[col], px[col + 1], px[col + 2], px[col + 3],
         px[col + 4], px[col + 5], px[col + 6], px[col + 7])
    q = py[row]
    qs = (q, q, q, q, q, q, q, q)
    if julia:  # z0 = pixel, c fixed
        return at, p, qs, (c_re, c_re, c_re, c_re, c_re, c_re, c_re, c_re), \
            (c_im, c_im, c_im, c_im, c_im, c_im, c_im, c_im), counts0
    zs = (zero, zero, zero, zero, zero, zero, zero, zero)  # mandelbrot: z0 = 0, c = pixel
    return at, zs, zs, p, qs, counts0


@inline
def _next8(row, col, stride):
    """The position of the group after (row, col): eight columns on, or the next row."""
    return (row, col + LANES32) if col + LANES32 < stride else (row + 1, 0)


_iterate_strip32 = _strip_iterator(_load8, _next8, _step8, _mod2_8, _escaped8, _store8)


# --------------------------------------------------------------------------- smooth values

_MANTISSA = np.uint64(0x000FFFFFFFFFFFFF)  # the 52 fraction bits of a float64
_ONE_BITS = np.uint64(0x3FF0000000000000)  # bits of 1.0: fraction bits | this = a float in [1, 2)
_TWO52_BITS = np.uint64(0x4330000000000000)  # bits of 2**52: | a small integer k = the float 2**52 + k
_TWO52_BIAS = 4503599627371519.0  # 2**52 + 1023: subtracting it leaves the unbiased exponent
_SHIFT = np.uint64(52)
_SQRT2 = 1.4142135623730951
_TWO_OVER_LN2 = 2.0 / math.log(2.0)


@inline
def _log2_mantissa(f):
    """log2(f) for f in [1, 2), to within 3e-11, with + - * / only (same bits everywhere).

    Folds f above √2 to f/2 (exact) so f is in [√2/2, √2], then
    log2(f) = 2/ln2 · atanh(s) with s = (f-1)/(f+1), |s| ≤ 0.172:
    atanh(s) = s + s³/3 + s⁵/5 + …, cut after s¹¹ (the rest is < 1e-11, times 2/ln2).
    """
    big = f > _SQRT2
    g = f * 0.5 if big else f
    s = (g - 1.0) / (g + 1.0)
    s2 = s * s
    series = s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0))))))
    return (1.0 if big else 0.0) + series * _TWO_OVER_LN2


@inline
def _log2_split(bits, exponent_bits, mantissa_bits):
    """Split positive float64s (given as uint64 bits) into exponent and mantissa in [1, 2).

    All three arguments are uint64 views of float64 arrays, the outputs at least as
    long as ``bits``. ``exponent_bits`` gets the float 2**52 + (biased exponent), so
    subtracting ``_TWO52_BIAS`` gives the exponent without an int→float conversion
    (which AVX2 lacks for int64);
    ``mantissa_bits`` gets the fraction bits under 1.0's exponent. So
    log2(v) = exponent + log2(mantissa) for every normal v, and +inf splits as
    1024 + log2(1): the limit of log2 at the largest float, so it stays continuous.
    """
    for i in range(len(bits)):
        b = bits[i]
        exponent_bits[i] = (b >> _SHIFT) | _TWO52_BITS
        mantissa_bits[i] = (b & _MANTISSA) | _ONE_BITS


@ngjit
def _finish_strip(nbuf, mbuf, stride, max_iter, inv_two_log2_r, exponent, mantissa, counts, smooth, row0):
    """Write the strip's rows of ``counts`` and ``smooth`` from its counts and final |z|².

    smooth = n + 1 - log2(log2(|z|²) · 1/(2·log2 R)), i.e. n + 1 - log2(log|z| / log R),
    clamped to [0, max_iter]; max_iter for points that never escaped. Each row goes
    in pieces of ``CHUNK`` pixels through four vectorisable loops: split |z|²,
    log2 and scale, split, log2 and write. ``exponent`` and ``mantissa`` are float64
    scratch arrays of ``CHUNK`` values.
    """
    cols = counts.shape[1]
    mbits = mbuf.view(np.uint64)
    ebits = exponent.view(np.uint64)
    fbits = mantissa.view(np.uint64)
    top = float(max_iter)
    for i in range(len(nbuf) // stride):
        count_row = counts[row0 + i]
        smooth_row = smooth[row0 + i]
        for j0 in range(0, cols, CHUNK):
            m = min(CHUNK, cols - j0)
            at = i * stride + j0
            _log2_split(mbits[at:at + m], ebits, fbits)
            for k in range(m):  # log2|z|² / (2 log2 R): > 1 for every escaped point
                mantissa[k] = ((exponent[k] - _TWO52_BIAS) + _log2_mantissa(mantissa[k])) * inv_two_log2_r
            _log2_split(fbits[:m], ebits, fbits)
            for k in range(m):
                n = nbuf[at + k]
                v = (n + 1.0) - ((exponent[k] - _TWO52_BIAS) + _log2_mantissa(mantissa[k]))
                v = min(max(v, 0.0), top)
                count_row[j0 + k] = n
                smooth_row[j0 + k] = top if n >= max_iter else v


# --------------------------------------------------------------------------- entry points


@inline
def _inv_two_log2(escape_radius, exponent, mantissa):
    """1 / (2 log2 R), with the same log2 as the pixels; ``exponent``, ``mantissa``: float64 scratch."""
    mantissa[0] = escape_radius
    _log2_split(mantissa.view(np.uint64)[:1], exponent.view(np.uint64), mantissa.view(np.uint64))
    return 1.0 / (2.0 * ((exponent[0] - _TWO52_BIAS) + _log2_mantissa(mantissa[0])))


@ngjit
def _escape_time_strips(julia, c_re, c_im, px, py, max_iter, escape_radius, r2, zero, idle, counts, smooth,
                        nbuf, mbuf):
    """Iterate and smooth a window strip by strip (float64).

    ``nbuf`` (int32) and ``mbuf`` (float64) are the scratch, at least
    ``_scratch_size(len(px), LANES)`` long.
    """
    rows = counts.shape[0]
    stride = len(px)
    strip_rows = max(1, STRIP_PIXELS // stride)
    exponent = np.empty(CHUNK, np.float64)
    mantissa = np.empty(CHUNK, np.float64)
    inv_two_log2_r = _inv_two_log2(escape_radius, exponent, mantissa)
    for r0 in range(0, rows, strip_rows):
        h = min(strip_rows, rows - r0)
        size = h * stride
        _iterate_strip(julia, c_re, c_im, px, py[r0:r0 + h], max_iter, r2, zero, idle, nbuf[:size], mbuf[:size])
        _finish_strip(nbuf[:size], mbuf[:size], stride, max_iter, inv_two_log2_r, exponent, mantissa,
                      counts, smooth, r0)


@ngjit
def _escape_time_strips32(julia, c_re, c_im, px, py, max_iter, escape_radius, r2, counts, smooth, nbuf, mbuf):
    """``_escape_time_strips`` iterating in float32 (``px``, ``py``, ``c_re``, ``c_im``, ``r2`` float32);
    the smooth pass is the same float64 one, from the float32 |z|²."""
    rows = counts.shape[0]
    stride = len(px)
    strip_rows = max(1, STRIP_PIXELS // stride)
    exponent = np.empty(CHUNK, np.float64)
    mantissa = np.empty(CHUNK, np.float64)
    inv_two_log2_r = _inv_two_log2(escape_radius, exponent, mantissa)
    for r0 in range(0, rows, strip_rows):
        h = min(strip_rows, rows - r0)
        size = h * stride
        _iterate_strip32(julia, c_re, c_im, px, py[r0:r0 + h], max_iter, r2, _ZERO32, np.float32(np.inf),
                         nbuf[:size], mbuf[:size])
        _finish_strip(nbuf[:size], mbuf[:size], stride, max_iter, inv_two_log2_r, exponent, mantissa,
                      counts, smooth, r0)


@ngjit
def _scratch_size(cols, lanes):
    """Pixels of scratch a window ``cols`` wide needs: one strip of rows padded to ``lanes``."""
    stride = (cols + lanes - 1) // lanes * lanes
    return max(1, STRIP_PIXELS // stride) * stride


@ngjit
def _pixel_centres(center_x, center_y, scale, width, height, row0, col0, rows, cols, lanes):
    """docs/api.md's pixel centres of the window, float64: x per column padded to a multiple of
    ``lanes`` (the padding repeats the last column), y per row."""
    stride = (cols + lanes - 1) // lanes * lanes
    half_w = width / 2
    half_h = height / 2
    last = col0 + cols - 1
    px = np.empty(stride)
    for j in range(stride):
        px[j] = center_x + ((min(col0 + j, last) + 0.5 - half_w) * scale) / width
    py = np.empty(rows)
    for i in range(rows):
        py[i] = center_y - (((row0 + i) + 0.5 - half_h) * scale) / width
    return px, py


@ngjit
def escape_time(julia: bool, c_re: float, c_im: float, center_x: float, center_y: float,
                scale: float, width: int, height: int, max_iter: int, escape_radius: float,
                row0: int, col0: int, counts: np.ndarray, smooth: np.ndarray) -> None:
    """Fill ``counts`` (uint32) and ``smooth`` (float32) for the window at (row0, col0) of the image.

    Exact float64 counts, docs/api.md's rule bit for bit (see the module docstring for
    how the work is laid out: vectors of four pixels, five in flight, refilled
    as they finish; then a vectorised pass for the smooth values).
    """
    rows, cols = counts.shape
    if rows == 0 or cols == 0:
        return
    px, py = _pixel_centres(center_x, center_y, scale, width, height, row0, col0, rows, cols, LANES)
    size = _scratch_size(cols, LANES)
    _escape_time_strips(julia, c_re, c_im, px, py, max_iter, escape_radius, escape_radius * escape_radius,
                        0.0, np.inf, counts, smooth, np.empty(size, np.int32), np.empty(size, np.float64))


#: ``escape_time_float32`` needs R² to be a finite float32 (largest 3.4e38). A guard: ``fractally.picture.spec``
#: rejects such specs first, with the same bound (a test keeps the two equal; numba's cache would not see
#: a constant imported from another module change).
FLOAT32_MAX_ESCAPE_RADIUS = 1e19


@ngjit
def escape_time_float32(julia: bool, c_re: float, c_im: float, center_x: float, center_y: float,
                        scale: float, width: int, height: int, max_iter: int, escape_radius: float,
                        row0: int, col0: int, counts: np.ndarray, smooth: np.ndarray) -> None:
    """Like ``escape_time`` but iterating in float32: the opt-in ``precision: "float32"``, NOT docs/api.md's rule.

    The pixel centres are docs/api.md's float64 values rounded to float32; c, R² and
    every step are float32 (z² + c evaluated as written, no FMA), so the result is
    itself reproducible bit for bit on every machine and tiling, only by a
    different rule. Counts differ from the float64 rule wherever float32 rounding
    changes an orbit, which is chaotic near the set's boundary: there a count can
    change a lot, but only among pixels whose neighbours already differ wildly,
    so the picture keeps its look (docs/api.md has the figures).

    Where it is visually safe is decided by ``fractally.picture.spec`` (``FLOAT32_MIN_SPACING``):
    the pixel spacing must be at least 2**-20 times the largest coordinate, so
    every float32 pixel centre is within 1/16 pixel of its exact place. It runs
    eight lanes per AVX2 register (``_iterate_strip32``), 1.4 to 1.5 times the
    pixel-iterations per second of ``escape_time``. ``escape_radius`` must be at most
    ``FLOAT32_MAX_ESCAPE_RADIUS``.
    """
    if not escape_radius <= FLOAT32_MAX_ESCAPE_RADIUS:
        raise ValueError("escape_time_float32 needs escape_radius <= 1e19 (R² must fit a float32)")
    rows, cols = counts.shape
    if rows == 0 or cols == 0:
        return
    px, py = _pixel_centres(center_x, center_y, scale, width, height, row0, col0, rows, cols, LANES32)
    r2 = np.float32(escape_radius) * np.float32(escape_radius)
    size = _scratch_size(cols, LANES32)
    _escape_time_strips32(julia, np.float32(c_re), np.float32(c_im), px.astype(np.float32), py.astype(np.float32),
                          max_iter, escape_radius, r2, counts, smooth, np.empty(size, np.int32),
                          np.empty(size, np.float64))


def render_window(spec, row0: int, col0: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts and smooth values for a window of ``spec``'s image (allocates the outputs).

    ``spec.precision`` picks the kernel: ``escape_time`` (float64, docs/api.md's exact
    rule, the default) or ``escape_time_float32`` (the opt-in).
    """
    counts = np.empty((rows, cols), dtype=np.uint32)
    smooth = np.empty((rows, cols), dtype=np.float32)
    c_re, c_im = spec.c if spec.c is not None else (0.0, 0.0)
    kernel = escape_time_float32 if spec.precision == "float32" else escape_time
    kernel(spec.julia, c_re, c_im, spec.center[0], spec.center[1], spec.scale,
           spec.width, spec.height, spec.max_iter, spec.escape_radius, row0, col0, counts, smooth)
    return counts, smooth
