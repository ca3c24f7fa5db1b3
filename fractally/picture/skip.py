"""The first iterations of a deep view, skipped for every pixel at once by a linear approximation.

While a pixel's difference δ from the reference is tiny against the reference itself, its step
δ ← 2·Z_m·δ + δ² + δc is linear to within a relative |δ|/|2Z_m| (the dropped δ²), so after m steps

    δ_m = A_m·δ₀ + B_m·δc,   A_{m+1} = 2·Z_m·A_m,  B_{m+1} = 2·Z_m·B_m + 1   (A₀ = 1, B₀ = 0)

(a julia pixel has δc = 0, a mandelbrot pixel δ₀ = 0: one coefficient each). At deep zooms this is
most of every pixel's iterations: at 1e-300 a pixel's δ needs some 700 steps to grow from 1e-300
to where δ² shows. The skip M is the last step at which the bound (|A_m| + |B_m|)·d, with d the
largest offset in the *whole image*, is still below ``TOLERANCE``·|Z_m| (julia: ``JULIA_TOLERANCE``;
and the reference is well inside the escape radius): so it is one number per view, the same for every
tile and machine, and each pixel starts at step M with δ_M = K·offset (K = A_M or B_M). The
coefficients are iterated in MPFR at 64 bits (correctly rounded: the same bits everywhere; its
exponent range holds the 1e400 that K reaches at a 1e-400 view). Past the skip, mandelbrot pixels
jump on per pixel by the bilinear approximation (``fractally.picture.bla``).

**Plain views skip further with a series** (``Series``). Keeping δ²'s effect, δ_m is a power
series in the pixel's offset; with u = offset/d (|u| ≤ 1) its first five terms T1·u + … + T5·u⁵
follow T1 ← 2Z·T1 + d, T_k ← 2Z·T_k + Σ_{i+j=k} T_i·T_j, and the view starts where the next two terms
are still below the tolerance relative to δ and δ below 2^-4·|Z| (so no pixel could need a rebase in
between; the escape radius is checked apart). The scaled terms stay within float64's range whatever
the depth, but the pixels of an extended view hold δ in extended form, so those keep the linear skip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fractally.picture.orbit import Orbit, PerView, image_radius
from fractally.picture.spec import RenderSpec

#: |δ| below this times |Z_m| (mandelbrot): the dropped δ² is below 2^-40 of each step, the bilinear
#: approximation's ε (``fractally.picture.bla``; δ grows geometrically, so the relative errors add up to
#: a few ε). It was 2^-64 before the BLA; 2^-40 skips some 16 more steps at 1e-30 and changes no sampled count.
TOLERANCE = 2.0**-40
#: Julia sets, which have no BLA table yet, keep the skip (and bits) they had: 2^-64.
JULIA_TOLERANCE = 2.0**-64
SKIPS_KEPT = 32


#: Terms of the series kept (δ_m's first TERMS powers of the pixel's offset).
TERMS = 5
#: The series is kept while δ stays below this times |Z_m|: then |Z_m + δ| > |δ|, so no pixel could
#: need a rebase in the steps it skips (and the escape radius is checked apart).
SERIES_SIZE = 2.0**-4


@dataclass(frozen=True)
class Series:
    """Plain views start at step ``m`` with δ = Σ_k (re[k] + i·im[k])·u^(k+1), u = offset·``inv_d``
    (|u| ≤ 1): δ_m's first ``TERMS`` terms as a power series in the pixel's offset, scaled by the
    largest one."""

    m: int
    re: tuple[float, ...]
    im: tuple[float, ...]
    inv_d: float

    def arrays(self) -> tuple:
        return (self.m, np.array(self.re), np.array(self.im), self.inv_d)


@dataclass(frozen=True)
class Skip:
    """Start every pixel at step ``m`` with δ = (kr + i·ki)·2^ke · offset; a plain view at
    ``series.m`` with its series instead (``Series``)."""

    m: int
    kr: float
    ki: float
    ke: int
    series: Series


NONE = Skip(0, 0.0, 0.0, 0, Series(0, (0.0,) * TERMS, (0.0,) * TERMS, 0.0))


def compute(spec: RenderSpec, ref: Orbit) -> Skip:
    """Iterate A or B along the reference while the linear step is exact to float64 (module docstring)."""
    import gmpy2

    assert spec.deep is not None
    largest = image_radius(spec)
    with gmpy2.context(precision=64):
        tol = gmpy2.mpfr(JULIA_TOLERANCE if spec.julia else TOLERANCE)
        radius = gmpy2.mpfr(spec.escape_radius) * (1 - gmpy2.mpfr(2.0**-20))
        k = gmpy2.mpc(1) if spec.julia else gmpy2.mpc(0)
        one = gmpy2.mpc(0) if spec.julia else gmpy2.mpc(1)
        best = NONE if not spec.julia else Skip(0, 0.5, 0.0, 1, NONE.series)  # K = 1 at step 0 for a julia set
        last = min(len(ref) - 1, spec.max_iter - 1)
        for m in range(last):
            z = _entry(ref, m)
            size = abs(z)
            if size >= radius:
                break
            k = 2 * z * k + one  # A or B at step m + 1
            bound = abs(k) * largest
            znext = _entry(ref, m + 1)
            if not bound < tol * abs(znext):
                break
            best = _skip(m + 1, k)
        series = _series(spec, ref, largest, tol, radius, last)
    return Skip(best.m, best.kr, best.ki, best.ke, series)


def _series(spec: RenderSpec, ref: Orbit, largest, tol, radius, last: int) -> Series:
    """δ_m as a power series in u = offset/d (d = ``largest``), δ_m = Σ T_k·u^k: T_1 ← 2Z·T_1 + d
    (julia: T_1 starts at d, no +d), T_k ← 2Z·T_k + Σ_{i+j=k} T_i·T_j. The first ``TERMS`` are kept
    while the next two stay below ``tol`` of δ's least size (|T_1| − |T_2| − … ) and δ below
    SERIES_SIZE·|Z_m| (MPFR, 64 bits)."""
    import gmpy2

    d = gmpy2.mpc(largest)
    terms = [gmpy2.mpc(0)] * (TERMS + 2)
    if spec.julia:
        terms[0] = d
    add = gmpy2.mpc(0) if spec.julia else d
    inv_d = float(1 / largest)

    def series(m: int) -> Series:
        kept = terms[:TERMS]
        return Series(m, tuple(float(t.real) for t in kept), tuple(float(t.imag) for t in kept), inv_d)

    best = series(0)  # step 0: δ = 0, or the offset itself (julia)
    for m in range(last):
        z = _entry(ref, m)
        if abs(z) >= radius:
            break
        two_z = 2 * z
        terms = [two_z * terms[k] + sum((terms[i] * terms[k - 1 - i] for i in range(k)), gmpy2.mpc(0))
                 + (add if k == 0 else 0) for k in range(TERMS + 2)]
        sizes = [abs(t) for t in terms]
        size = sum(sizes[:TERMS])
        znext = abs(_entry(ref, m + 1))
        if not (size < SERIES_SIZE * znext and znext + size < radius
                and sizes[TERMS] + sizes[TERMS + 1] < tol * (sizes[0] - sum(sizes[1:TERMS]))):
            break
        best = series(m + 1)
    return best


def _entry(ref: Orbit, m: int):
    """Reference entry ``m`` exactly, as an mpc (from its mantissas and exponent)."""
    import gmpy2

    return gmpy2.mpc(gmpy2.mul_2exp(gmpy2.mpfr(float(ref.mre[m])), int(ref.exp[m])),
                     gmpy2.mul_2exp(gmpy2.mpfr(float(ref.mim[m])), int(ref.exp[m])))


def _skip(m: int, k) -> Skip:
    """``Skip`` of coefficient ``k`` (an mpc) with its larger part's mantissa in [0.5, 1)."""
    import gmpy2

    re, im = k.real, k.imag
    e = max(gmpy2.frexp(re)[0] if re != 0 else -(2**40), gmpy2.frexp(im)[0] if im != 0 else -(2**40))
    return Skip(m, float(gmpy2.mul_2exp(re, -e)), float(gmpy2.mul_2exp(im, -e)), int(e), NONE.series)


#: The view's skip (``compute``), kept per process: every tile of a job asks for the same one.
skip_for = PerView(compute, SKIPS_KEPT)
