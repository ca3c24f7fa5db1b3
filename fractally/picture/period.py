"""A mandelbrot reference is cut at the view's period: every pixel rebases there, back to step 0.

Beside a minibrot of period p a pixel's orbit passes near 0 every p steps. When the reference passes
0 there too (it is the nucleus, or near it), every pixel may rebase at step p (δ ← Z_p + δ, back to
Z₀ = 0: exact, as every rebase, ``fractally.picture.perturb``) instead of going on along
Z_{p+1}, Z_{p+2}, … ≈ Z₁, Z₂, …. The rebase rule |Z_m + δ| < |δ| holds there for only some of the
pixels; the others go on at steps that are not multiples of powers of 2, where the BLA table
(``fractally.picture.bla``: entries at steps 1 + j·2^l) has only short jumps. Cut at p, every pixel
starts each period at step 0 and crosses it in a few long jumps.

**Where to cut: the view's period.** The view's ball (centre Z, radius r_m ⊇ every pixel's δ_m: r₀
the whole image's largest offset, r_{m+1} = 2|Z_m|·r_m + r_m² + r₀) first holds 0 at p, the lowest
period of a nucleus in the view (Robert Munafo's ball method), or where the ball has outgrown the
set (|Z_p| ≈ r_p ≈ 1, a few steps before a reference that escapes does: the view has left the linear
regime by then). A ball that never holds 0 (a view inside a cardioid or bulb) leaves the orbit
whole. Measured on every benchmark view: the counts are those of the whole orbit, pixel for pixel
(docs/benchmarks.md, "Deep views").

**Same bits everywhere.** The ball is computed in float64 mantissas with an int exponent
(``fractally.picture.pairs``: it spans 1e-600 … 1e+1 beside a deep minibrot) by ``ngjit``'s correctly
rounded +, ×, √ in one order, from the reference and the whole image's largest offset: one cut per
view, the same on every machine. Julia sets are not cut: their pixels rebase onto the critical orbit,
not the reference.
"""

from __future__ import annotations

import math

from fractally.picture.bla import largest_offset
from fractally.picture.kernel import ngjit
from fractally.picture.orbit import Orbit, PerView, orbits_for
from fractally.picture.pairs import less, norm, shift
from fractally.picture.spec import RenderSpec
from fractally.store import ObjectStore

#: Cut lengths kept per process (one int each).
CUTS_KEPT = 64


@ngjit
def _cut_length(mre, mim, exp, n, cm, ce):
    """Entries to keep: p + 1 for the first step p ≥ 1 whose ball holds 0 (|Z_p| < r_p), else n."""
    rm, re = cm, ce
    for m in range(n):
        zm, ze = norm(math.sqrt(mre[m] * mre[m] + mim[m] * mim[m]), exp[m])
        if m >= 1 and less(zm, ze, rm, re):
            return m + 1
        # r ← 2|Z|·r + r² + r₀, each term a mantissa and an exponent, summed at the largest
        am, ae = norm(2.0 * zm * rm, ze + re)
        bm, be = norm(rm * rm, re + re)
        top = max(ae, be, ce)
        rm, re = norm((shift(am, ae - top) + shift(bm, be - top)) + shift(cm, ce - top), top)
    return n


def _cut(spec: RenderSpec, ref: Orbit) -> int:
    cm, ce = largest_offset(spec)
    n = min(len(ref), spec.max_iter + 1)
    return int(_cut_length(ref.mre, ref.mim, ref.exp, n, cm, ce))


_cuts = PerView(_cut, CUTS_KEPT)


def view_orbits(spec: RenderSpec, store: ObjectStore | None = None) -> tuple[Orbit, Orbit]:
    """(reference, critical orbit) as a deep view renders them: the job's orbits (``orbit.orbits_for``),
    a mandelbrot reference cut at the view's period."""
    ref, crit = orbits_for(spec, store)
    if spec.julia:
        return ref, crit
    n = _cuts(spec, ref)
    if n >= len(ref):
        return ref, crit
    cut = ref.head(n)
    return cut, cut
