"""Bilinear approximation (BLA) along the whole reference orbit: many steps of a pixel in one.

While a pixel's difference δ from the reference is small against Z_m, its step
δ ← 2·Z_m·δ + δ² + δc is the linear map δ ↦ A·δ + B·δc (A = 2·Z_m, B = 1) to within a relative
error |δ|/|2Z_m|, so the steps m … m+2^l−1 compose into one map with

    A = A_y·A_x,   B = A_y·B_x + B_y          (x: the first half, y: the second)

valid while |δ| < r, r₀ = ε·|2Z_m| for one step and, merged (Zhuoran 2021, as in Kalles
Fraktaler 2.15 and fractalshades), r = min(r_x, max(0, (r_y − |B_x|·|δc|max)/|A_x|)): δ stays inside
every step's radius on the way. Level l holds the maps of 2^l steps starting at steps 1 + j·2^l
(step 0 has Z = 0: nothing is linear there, and a rebased pixel restarts at step 0); a pixel at step m
takes the largest level whose entry at m is valid for its |δ| (``fractally.picture.perturb``).

**Same bits everywhere.** The table depends only on the view: the reference orbit and the largest
|δc| of the *whole image* (never a tile's), built in one fixed order of float64 operations by
``ngjit`` (no fastmath, no FMA). Radii are kept as a mantissa and an exponent (they reach 2^-2000
beside a deep minibrot) and as a float64 for the plain loop (0 below 2^-1000); magnitudes are L1
norms (|x| + |y|, an upper bound) where a larger value is the safe side and max norms where a smaller
one is. An entry is left out (r = 0) where the reference nears the escape radius, where Z is below
2^-900 (a deep minibrot's nucleus: nothing is linear there), or where |A| leaves [2^-900, 2^900] or
|B| passes 2^900: float64 holds A·δ's mantissa and B·δc then, and a jump still multiplies δ by up to
2^900.

For julia sets the table is empty (today's kernel: the pixels rebase onto another orbit than the
reference, which would need two tables).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from fractally.picture.kernel import ngjit
from fractally.picture.orbit import Orbit, PerView, image_radius
from fractally.picture.pairs import ZERO_EXPONENT, less, norm, shift
from fractally.picture.spec import RenderSpec

#: r₀ = EPSILON·|2Z|: the dropped δ² is below EPSILON of the step (float64's rounding is 2^-53).
#: 2^-24 to 2^-53 ran equally fast beside the deep minibrot (docs/benchmarks.md): the cautious middle.
EPSILON = 2.0**-40
#: |A| and |B| of an entry stay within 2^±LIMIT_EXPONENT (A·δ's mantissa and B·δc fit float64).
LIMIT_EXPONENT = 900
_LIMIT = 2.0**LIMIT_EXPONENT
_FLOOR = 2.0**-LIMIT_EXPONENT
#: Tables kept in memory per process (5.6 MB each at 50,000 steps, rebuilt in some 6 ms).
TABLES_KEPT = 4


@dataclass(frozen=True)
class Table:
    """Entries of every level one after the other; level l's entry j (steps 1 + j·2^l …) at offsets[l] + j.

    ``rp``: the radius as float64 (0 below 2^-1000), for the plain loop; ``rm``·2^``rexp`` the radius.
    """

    ar: np.ndarray
    ai: np.ndarray
    br: np.ndarray
    bi: np.ndarray
    rp: np.ndarray
    rm: np.ndarray
    rexp: np.ndarray  # int64
    offsets: np.ndarray  # int64, one per level
    counts: np.ndarray  # int64, entries per level
    seconds: float = 0.0

    def arrays(self) -> tuple:
        """The arrays in the order the kernel takes them."""
        return (self.ar, self.ai, self.br, self.bi, self.rp, self.rm, self.rexp, self.offsets, self.counts)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays())


def empty() -> Table:
    """No entry: every step is taken one at a time (julia sets)."""
    f, i = np.zeros(0), np.zeros(0, np.int64)
    return Table(f, f, f, f, f, f, i, np.zeros(1, np.int64), np.zeros(1, np.int64))


@ngjit
def _merged_radius(rxm, rxe, rym, rye, bx1, ax1, cm, ce):
    """min(r_x, max(0, (r_y − |B_x|·|δc|max)/|A_x|)) in pairs; bx1, ax1: L1 norms, |δc|max = cm·2^ce."""
    tm, te = norm(bx1 * cm, ce)
    if tm == 0.0:
        dm, de = rym, rye
    elif rye >= te:
        dm, de = rym - shift(tm, te - rye), rye
    else:
        dm, de = shift(rym, rye - te) - tm, te
    dm, de = norm(dm, de)
    if dm == 0.0:
        return 0.0, ZERO_EXPONENT
    ym, ye = norm(dm / ax1, de)
    if less(ym, ye, rxm, rxe):
        return ym, ye
    return rxm, rxe


@ngjit
def _level0(re, im, exp, first, n0, r_max, eps, ar, ai, br, bi, rm, rexp):
    """One step's map at each step first … first + n0 − 1: A = 2Z, B = 1, r = eps·max(|2Zr|, |2Zi|)."""
    for j in range(n0):
        m = first + j
        zr = re[m]
        zi = im[m]
        tr = zr + zr
        ti = zi + zi
        big = max(abs(tr), abs(ti))
        if exp[m] < -LIMIT_EXPONENT or big < _FLOOR or not zr * zr + zi * zi < r_max * r_max:
            continue  # left out: r = 0
        ar[j], ai[j], br[j], bi[j] = tr, ti, 1.0, 0.0
        rm[j], rexp[j] = norm(eps * big, 0)


@ngjit
def _merge_level(src, dst, count, ar, ai, br, bi, rm, rexp, cm, ce):
    """Level l's ``count`` entries at ``dst`` from level l−1's pairs at ``src`` (module docstring)."""
    for j in range(count):
        x = src + 2 * j
        y = x + 1
        if rm[x] == 0.0 or rm[y] == 0.0:
            continue
        nar = ar[y] * ar[x] - ai[y] * ai[x]
        nai = ar[y] * ai[x] + ai[y] * ar[x]
        nbr = (ar[y] * br[x] - ai[y] * bi[x]) + br[y]
        nbi = (ar[y] * bi[x] + ai[y] * br[x]) + bi[y]
        a1 = abs(nar) + abs(nai)
        if not (a1 <= _LIMIT and abs(nbr) + abs(nbi) <= _LIMIT and max(abs(nar), abs(nai)) >= _FLOOR):
            continue
        m, e = _merged_radius(rm[x], rexp[x], rm[y], rexp[y], abs(br[x]) + abs(bi[x]),
                              abs(ar[x]) + abs(ai[x]), cm, ce)
        if m == 0.0:
            continue
        k = dst + j
        ar[k], ai[k], br[k], bi[k] = nar, nai, nbr, nbi
        rm[k], rexp[k] = m, e


@ngjit
def _build(re, im, exp, n0, r_max, eps, cm, ce, levels):
    """Every level of the table for the steps 1 … n0 (see ``build``)."""
    counts = np.zeros(levels, np.int64)
    offsets = np.zeros(levels, np.int64)
    count = n0
    total = 0
    for lv in range(levels):
        counts[lv] = count
        offsets[lv] = total
        total += count
        count //= 2
    ar = np.zeros(total)
    ai = np.zeros(total)
    br = np.zeros(total)
    bi = np.zeros(total)
    rm = np.zeros(total)
    rexp = np.full(total, ZERO_EXPONENT, np.int64)
    _level0(re, im, exp, 1, n0, r_max, eps, ar, ai, br, bi, rm, rexp)
    for lv in range(1, levels):
        _merge_level(offsets[lv - 1], offsets[lv], counts[lv], ar, ai, br, bi, rm, rexp, cm, ce)
    rp = np.zeros(total)
    for k in range(total):
        if rm[k] != 0.0 and rexp[k] > -1000:
            rp[k] = math.ldexp(rm[k], int(rexp[k]))
    return ar, ai, br, bi, rp, rm, rexp, offsets, counts


def largest_offset(spec: RenderSpec) -> tuple[float, int]:
    """|δc|max of the whole image (``orbit.image_radius``) as (mantissa, exponent)."""
    import gmpy2

    e, m = gmpy2.frexp(image_radius(spec))
    return float(m), int(e)


def build(spec: RenderSpec, ref: Orbit, eps: float = EPSILON) -> Table:
    """The view's table along ``ref``: its steps 1 … last−1 (a jump lands at most on the last entry)."""
    if spec.julia:
        return empty()
    started = time.perf_counter()
    n0 = max(0, min(len(ref) - 1, spec.max_iter) - 1)
    levels = max(1, n0.bit_length())
    cm, ce = largest_offset(spec)
    r_max = spec.escape_radius * (1 - 2.0**-20)
    arrays = _build(ref.re, ref.im, ref.exp, n0, r_max, eps, cm, ce, levels)
    return Table(*arrays, seconds=time.perf_counter() - started)


_tables = PerView(build, TABLES_KEPT)


def table_for(spec: RenderSpec, ref: Orbit) -> Table:
    """The view's table (kept per process: every tile of a job asks for the same one); none for julia."""
    return empty() if spec.julia else _tables(spec, ref)
