"""Positive numbers beyond float64's exponent range, as a float64 mantissa in [0.5, 1) and an int exponent.

The BLA table's radii (``fractally.picture.bla``) and the view's ball (``fractally.picture.period``)
reach 2^-2000 beside a deep minibrot. frexp and ldexp are exact, so these pairs round only where
their float64 products and sums do: the same bits on every machine.
"""

from __future__ import annotations

import math

from fractally.picture.kernel import ngjit

#: The exponent of zero: below every other.
ZERO_EXPONENT = -(2**40)


@ngjit
def norm(m, e):
    """m·2^e as (mantissa in [0.5, 1), exponent), or (0, ZERO_EXPONENT) for m ≤ 0 (magnitudes are never negative)."""
    if not m > 0.0:
        return 0.0, ZERO_EXPONENT
    f, k = math.frexp(m)
    return f, e + k


@ngjit
def shift(x, s):
    """x·2^s for s ≤ 0, 0 when it underflows."""
    if s < -1100:
        return 0.0
    return math.ldexp(x, s)


@ngjit
def less(am, ae, bm, be):
    """a < b for normalised pairs (zero: mantissa 0)."""
    if am == 0.0:
        return bm != 0.0
    if bm == 0.0:
        return False
    if ae != be:
        return ae < be
    return am < bm
