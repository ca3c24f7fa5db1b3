"""Deep views: every pixel iterated in float64 as a difference from one arbitrary-precision orbit.

A pixel's orbit z is written z = Z_m + δ with Z the reference orbit (``fractally.picture.orbit``), and

    δ ← (2·Z_m + δ)·δ + δc        (mandelbrot: δc = the pixel's offset from the centre, δ₀ = 0;
                                    julia: δc = 0, δ₀ = the pixel's offset)

which float64 holds however deep the view: δ is as small as the pixels are far apart. The escape
test is docs/api.md's |z|² ≤ R² on z = Z_m + δ, and n counts steps as in the exact rule.

**Rebasing** (Zhuoran, 2021) replaces glitch detection: when |Z_m + δ| < |δ| (the pixel's orbit
passes nearer 0 than the reference's difference), or the reference runs out (it escaped, or
max_iter), δ becomes the whole z and m goes back to 0 on the *critical orbit* W (the orbit of 0:
for a mandelbrot the reference itself; for a julia set the orbit of 0 under z² + c). Since
W₀ = 0, the new δ is z exactly as float64 holds it.

**Extended exponent.** Below about 1e-290 a pixel's δ and δc no longer fit float64's exponent.
Such a pixel starts in extended mode: δ and δc are float64 pairs with a shared int exponent
(δ = (dr + i·di)·2^de), each step a sum of 2·Z·δ, δ² and δc aligned to the largest term's
exponent, then renormalised. Once δ ≥ 2^-800 it switches to the plain float64 loop (δc, below
2^-960·width, is then under float64's rounding of the step and dropped), and back if δ shrinks
again, or if |2Z + δ| is so small that δc would count (a rebase onto W₀ = 0, a pass beside a deep
minibrot's nucleus). While the reference entry is far larger than δ (no rebase
can be due) the extended step keeps δ's exponent for many steps and costs two multiplies more than
the plain one; the aligned sum is for entries near 0 (every period, inside a deep minibrot).

**Bilinear approximation** (``fractally.picture.bla``, mandelbrot views): while δ is small against
Z_m, 2^l steps from step m are one linear map δ ← A·δ + B·δc from a table built once per view. At
each step (in the plain loop: from a rebase or a return from extended form, until a step's own
entry does not hold δ) the pixel takes the longest entry at m whose radius holds its
|δ| and that ends before max_iter; in extended form A·δ's and B·δc's mantissas are summed at the
larger exponent. Beside a deep minibrot a pixel crosses most of each period in a few jumps, up to
2^900 times larger each, instead of hundreds of extended steps.

**Same bits everywhere.** One reference per job (its bytes are the same wherever computed: MPFR
rounds correctly), the pixel offset from the whole image's index (docs/api.md's formula, centre
omitted), one BLA table per view (from the reference and the whole image's largest offset), a fixed
operation order, no fastmath, no FMA: every machine and every tiling gives the same counts. They
are not the exact-arithmetic counts of the decimal coordinates: they agree on nearly every pixel
(docs/benchmarks.md, "Deep views"; tests/picture/test_deep.py checks against mpmath).
"""

from __future__ import annotations

import math
import struct

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic
from numba import literally

from fractally.picture import bla
from fractally.picture.kernel import CHUNK, STRIP_PIXELS, _finish_strip, _inv_two_log2, inline, ngjit
from fractally.picture.orbit import Orbit
from fractally.picture.skip import skip_for
from fractally.picture.spec import RenderSpec

#: δ at or above 2^PLAIN_EXPONENT (and δc below float64's range) runs the plain float64 loop.
PLAIN_EXPONENT = -800
#: A pixel spacing below 2^EXTENDED_SPACING needs the extended-exponent path (δc would underflow).
EXTENDED_SPACING = -960
_PLAIN_D2 = 2.0 ** (2 * PLAIN_EXPONENT)
#: In an extended view the plain step drops δc (≤ 2^-948): it may only while |2Z + δ| ≥ 2^-50, so that
#: |(2Z + δ)·δ| ≥ 2^-850 keeps δc under 2^-98 of it; below (δ's orbit passing 0: just rebased onto
#: W₀ = 0, or beside a deep minibrot's nucleus) the step is taken in extended form, δc included.
_PLAIN_T2 = 2.0**-100
#: Reference entries at least 2^FAST_EXPONENT take the extended path's fast step (δ keeps its exponent).
FAST_EXPONENT = -700
_RESCALE_LOW, _RESCALE_HIGH = 2.0**-32, 2.0**32  # the fast step renormalises δ's mantissas outside these
#: The plain loop looks for a jump every 2^PLAIN_LEVEL steps (steps 1 + j·8) and takes it only if it
#: spans at least as many: a plain step costs about what the look does, and a shorter jump saves little.
PLAIN_LEVEL = 3
PLAIN_MASK = (1 << PLAIN_LEVEL) - 1


if numba.config.DISABLE_JIT:  # plain Python (NUMBA_DISABLE_JIT=1): the same bits through struct
    def _bits(x):
        return struct.unpack("<q", struct.pack("<d", x))[0]

    def _float(b):
        return struct.unpack("<d", struct.pack("<q", b))[0]
else:
    @intrinsic
    def _bits(typingctx, x):
        """The float64's bit pattern as an int64."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(64))
        return types.int64(types.float64), codegen

    @intrinsic
    def _float(typingctx, b):
        """The float64 of an int64 bit pattern."""
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.DoubleType())
        return types.float64(types.int64), codegen


@ngjit
def _ldexp(x, s):
    """math.ldexp(x, s), the same bits: a multiply by 2^s where 2^s is a normal float64 (libm's call
    costs ten times more, and the extended path scales at every jump and aligned sum)."""
    if -1022 <= s <= 1023:
        return x * _float((s + 1023) << 52)
    return math.ldexp(x, s)


@ngjit
def _exponent(x):
    """math.frexp(x)[1] (x finite, nonzero): read from the bits for normal numbers."""
    biased = (_bits(x) >> 52) & 0x7FF
    if biased == 0:
        return math.frexp(x)[1]
    return biased - 1022


@ngjit
def _split(re, im):
    """(mantissa re, mantissa im, exponent) with the larger mantissa in [0.5, 1); zero gets a tiny exponent."""
    big = max(abs(re), abs(im))
    if big == 0.0:
        return 0.0, 0.0, -(2**40)
    e = _exponent(big)
    return _ldexp(re, -e), _ldexp(im, -e), e


@ngjit
def _scaled(x, shift):
    """x · 2^shift for shift ≤ 0 (0 when it underflows), for sums of terms of different exponents."""
    if shift < -1100:
        return 0.0
    return _ldexp(x, shift)


@ngjit
def _times(x, e):
    """x·2^e for the exponent of δc (0 when it underflows; δc = 0 has an exponent of -2^40)."""
    if e < -2200:
        return 0.0
    return _ldexp(x, e)


@inline
def _plain_level(offsets, counts):
    """(entries, offset) of the table's ``PLAIN_LEVEL``: (0, 0) when the table is shorter."""
    if len(counts) <= PLAIN_LEVEL:
        return 0, 0
    return counts[PLAIN_LEVEL], offsets[PLAIN_LEVEL]


@inline
def _plain_entry(rp, offsets, counts, k, size, room):
    """The longest jump from table step ``k`` (step k + 1) for a δ of L1 norm ``size``, at most ``room``
    steps, given that k's ``PLAIN_LEVEL`` entry holds it: (entry, steps). A longer jump's radius is
    never larger (``fractally.picture.bla``), so the levels are tried upwards."""
    best = offsets[PLAIN_LEVEL] + (k >> PLAIN_LEVEL)
    steps = 1 << PLAIN_LEVEL
    lv = PLAIN_LEVEL + 1
    while lv < len(counts) and (k & ((1 << lv) - 1)) == 0 and (1 << lv) <= room:
        j = k >> lv
        if j >= counts[lv] or not size < rp[offsets[lv] + j]:
            break
        best = offsets[lv] + j
        steps = 1 << lv
        lv += 1
    return best, steps


@inline
def _fits(rm, rexp, idx, sm, se):
    """A δ of L1 norm sm·2^se (sm in [0.5, 1)) is inside entry ``idx``'s radius rm·2^rexp (rm in [0.5, 1),
    0 for none): an exact comparison, by exponents first."""
    e = rexp[idx]
    return rm[idx] != 0.0 and (e > se or (e == se and sm < rm[idx]))


@inline
def _extended_entry(rm, rexp, offsets, counts, k, size, de, room):
    """``_plain_entry`` for a δ = D·2^de in extended form (``size`` = |D|'s L1 norm)."""
    if k < 0 or k >= counts[0] or room < 1 or rm[k] == 0.0:
        return -1, 0
    se = _exponent(size)
    sm = _ldexp(size, -se)
    se += de
    if not _fits(rm, rexp, k, sm, se):
        return -1, 0
    best = k
    steps = 1
    lv = 1
    while lv < len(counts) and (k & ((1 << lv) - 1)) == 0 and (1 << lv) <= room:
        j = k >> lv
        if j >= counts[lv] or not _fits(rm, rexp, offsets[lv] + j, sm, se):
            break
        best = offsets[lv] + j
        steps = 1 << lv
        lv += 1
    return best, steps


@inline
def _extended_jump(ar, ai, br, bi, dr, di, de, cr, ci, ce):
    """A·δ + B·δc with δ = (dr + i·di)·2^de and δc = (cr + i·ci)·2^ce: each product's mantissas
    (float64 holds them: |A|, |B| ≤ 2^900), summed at the larger exponent; (mantissas, exponent)."""
    pr, pi, pe = _split(ar * dr - ai * di, ar * di + ai * dr)
    qr, qi, qe = _split(br * cr - bi * ci, br * ci + bi * cr)
    pe += de
    qe += ce
    top = max(pe, qe)
    sr = _scaled(pr, pe - top) + _scaled(qr, qe - top)
    si = _scaled(pi, pe - top) + _scaled(qi, qe - top)
    r, i, e = _split(sr, si)
    return r, i, top + e


@inline
def _series_delta(series, ox, oy):
    """A plain view's δ at its series' step for the offset (ox, oy): Σ_k T_k·u^(k+1) by Horner's rule,
    u = offset·inv_d (``fractally.picture.skip.Series``)."""
    _, tre, tim, inv_d = series
    ur = ox * inv_d
    ui = oy * inv_d
    sr = 0.0
    si = 0.0
    for k in range(len(tre) - 1, -1, -1):
        sr, si = (sr * ur - si * ui) + tre[k], (sr * ui + si * ur) + tim[k]
    return sr * ur - si * ui, sr * ui + si * ur


@ngjit
def _pixel(julia, ref_re, ref_im, ref_mre, ref_mim, ref_exp, crit_re, crit_im, crit_mre, crit_mim, crit_exp,
           off_re, off_im, off_exp, extended, max_iter, r2, skip_m, kr, ki, ke, series, table):
    """One pixel's count and final |z|² (see the module docstring for the rule).

    ``off_*``: the pixel's offset from the centre as mantissas and an exponent (plain views: the
    float64 offset with exponent 0). ``extended``: the pixel may (and at first does) use the
    extended-exponent form. ``skip_m``, ``kr``, ``ki``, ``ke``: an extended view's skipped steps and
    δ at that step as K·offset, K = (kr + i·ki)·2^ke (``fractally.picture.skip``); a plain view
    starts at its ``series`` (``Series.arrays``) instead. ``table``: the view's BLA table
    (``fractally.picture.bla.Table.arrays``; empty for a julia set).
    """
    tar, tai, tbr, tbi, trp, trm, trexp, toff, tcnt = table
    n0 = tcnt[0]
    steps = 0
    n_plain, o_plain = _plain_level(toff, tcnt)
    # the difference δ where the pixel starts: a plain view's series; an extended view's K·offset at step
    # skip_m, as mantissas and an exponent (as a float64 if it is already above 2^PLAIN_EXPONENT)
    if extended:
        dr, di, e = _split(kr * off_re - ki * off_im, kr * off_im + ki * off_re)
        de = e + ke + off_exp
        plain = de > PLAIN_EXPONENT
        if plain:
            dr = _ldexp(dr, de) if de > -1100 else 0.0
            di = _ldexp(di, de) if de > -1100 else 0.0
    else:
        dr, di = _series_delta(series, off_re, off_im)
        de = 0
        plain = True
        skip_m = series[0]
    if julia:
        cr, ci, ce = 0.0, 0.0, -(2**40)
    else:
        cr, ci, ce = off_re, off_im, off_exp
    # δc as a float64 for the plain loop: the offset itself in a plain view; in an extended one it is
    # below float64's rounding of δ whenever the plain loop runs (0 or a subnormal here)
    pcr = _ldexp(cr, ce) if ce > -1100 else 0.0
    pci = _ldexp(ci, ce) if ce > -1100 else 0.0
    zre, zim, zm, ze, zx = ref_re, ref_im, ref_mre, ref_mim, ref_exp
    fast_e = 1 << 50  # the exponent the fast extended step's factors were made for (none yet)
    s_de = s_c = 0.0
    last = len(zre) - 1
    m = skip_m
    n = skip_m
    z2 = 0.0
    while True:
        Zr = zre[m]
        Zi = zim[m]
        if plain:
            xr = Zr + dr
            xi = Zi + di
            z2 = xr * xr + xi * xi
            if not z2 <= r2 or n >= max_iter:
                break
            j = m - 1
            if (j & PLAIN_MASK) == 0 and 0 <= (j >> PLAIN_LEVEL) < n_plain and n + (1 << PLAIN_LEVEL) <= max_iter:
                size = abs(dr) + abs(di)
                if size < trp[o_plain + (j >> PLAIN_LEVEL)]:  # 8 or more steps in one map (bla)
                    idx, steps = _plain_entry(trp, toff, tcnt, j, size, max_iter - n)
                    ur = tbr[idx] * cr - tbi[idx] * ci
                    ui = tbr[idx] * ci + tbi[idx] * cr
                    if ce != 0:  # δc in mantissa form: an extended view
                        ur = _times(ur, ce)
                        ui = _times(ui, ce)
                    nr = (tar[idx] * dr - tai[idx] * di) + ur
                    ni = (tar[idx] * di + tai[idx] * dr) + ui
                    dr, di = nr, ni
                    m += steps
                    n += steps
                    if extended and dr * dr + di * di < _PLAIN_D2:
                        dr, di, de = _split(dr, di)
                        plain = False
                    continue
            d2 = dr * dr + di * di
            if z2 < d2 or m == last:  # rebase onto the critical orbit, whose W₀ = 0
                dr, di = xr, xi
                zre, zim, zm, ze, zx = crit_re, crit_im, crit_mre, crit_mim, crit_exp
                last = len(zre) - 1
                m = 0
                Zr = zre[0]
                Zi = zim[0]
                d2 = z2
            tr = (Zr + Zr) + dr
            ti = (Zi + Zi) + di
            if extended and tr * tr + ti * ti < _PLAIN_T2:  # δc would matter: this step in extended form
                dr, di, de = _split(dr, di)
                plain = False
                continue
            nr = (tr * dr - ti * di) + pcr
            ni = (tr * di + ti * dr) + pci
            dr, di = nr, ni
            m += 1
            n += 1
            if extended and dr * dr + di * di < _PLAIN_D2:  # too small for float64's exponent: extended again
                dr, di, de = _split(dr, di)
                plain = False
            continue
        # extended mode: δ = (dr + i di)·2^de, |δ| < 2^PLAIN_EXPONENT
        xr = Zr + _ldexp(dr, de) if de > -1100 else Zr
        xi = Zi + _ldexp(di, de) if de > -1100 else Zi
        z2 = xr * xr + xi * xi
        if not z2 <= r2 or n >= max_iter:
            break
        j = m - 1
        idx = -1
        if 0 <= j < n0 and trm[j] != 0.0:
            idx, steps = _extended_entry(trm, trexp, toff, tcnt, j, abs(dr) + abs(di), de, max_iter - n)
        if idx >= 0:  # inside the entry's radius: |δ| ≪ |Z_m|, no rebase due; one map for the steps
            dr, di, de = _extended_jump(tar[idx], tai[idx], tbr[idx], tbi[idx], dr, di, de, cr, ci, ce)
            m += steps
            n += steps
            if de > PLAIN_EXPONENT:
                dr, di = _ldexp(dr, de), _ldexp(di, de)
                plain = True
            continue
        Me = zx[m]
        if Me > FAST_EXPONENT and m != last and ce - de < 1000:
            # |Z| ≥ 2^FAST_EXPONENT ≫ |δ|: no rebase can be due, and with δ = D·2^de kept at one
            # exponent for many steps the step is the plain one plus two multiplies:
            # D' = (2Z + D·2^de)·D + C·2^(ce-de), the factors recomputed only when de changes
            if de != fast_e:
                fast_e = de
                s_de = _ldexp(1.0, de) if de > -1074 else 0.0
                s_c = _ldexp(1.0, ce - de) if ce - de > -1074 else 0.0
            tr = (Zr + Zr) + dr * s_de
            ti = (Zi + Zi) + di * s_de
            nr = (tr * dr - ti * di) + cr * s_c
            ni = (tr * di + ti * dr) + ci * s_c
            dr, di = nr, ni
            m += 1
            n += 1
            big = max(abs(dr), abs(di))
            if not (_RESCALE_LOW < big < _RESCALE_HIGH):
                dr, di, e = _split(dr, di)
                de = de + e
                if de > PLAIN_EXPONENT:
                    dr, di = _ldexp(dr, de), _ldexp(di, de)
                    plain = True
            continue
        Mr = zm[m]
        Mi = ze[m]
        # z = Z + δ aligned to the larger exponent; rebase when |z| < |δ| or the reference ends
        top = max(Me, de)
        sr = _scaled(Mr, Me - top) + _scaled(dr, de - top)
        si = _scaled(Mi, Me - top) + _scaled(di, de - top)
        qr = _scaled(dr, de - top)
        qi = _scaled(di, de - top)
        if sr * sr + si * si < qr * qr + qi * qi or m == last:
            dr, di, e = _split(sr, si)
            de = top + e
            zre, zim, zm, ze, zx = crit_re, crit_im, crit_mre, crit_mim, crit_exp
            last = len(zre) - 1
            m = 0
            Mr = zm[0]
            Mi = ze[0]
            Me = zx[0]
        # δ' = 2·Z·δ + δ² + δc, each term as mantissas and an exponent, summed at the largest
        ar = 2.0 * (Mr * dr - Mi * di)
        ai = 2.0 * (Mr * di + Mi * dr)
        ea = Me + de
        br = dr * dr - di * di
        bi = 2.0 * (dr * di)
        eb = de + de
        top = max(ea, eb, ce)
        sr = (_scaled(ar, ea - top) + _scaled(br, eb - top)) + _scaled(cr, ce - top)
        si = (_scaled(ai, ea - top) + _scaled(bi, eb - top)) + _scaled(ci, ce - top)
        dr, di, e = _split(sr, si)
        de = top + e
        m += 1
        n += 1
        if de > PLAIN_EXPONENT:  # large enough for float64: the plain loop
            dr, di = _ldexp(dr, de), _ldexp(di, de)
            plain = True
    return n, z2


LANES = 4  # pixels in flight in the plain loop: their dependency chains overlap


@ngjit
def _plain_strip(julia, zr, zi, ref_len, px, py, series, max_iter, r2, table, jumps, nbuf, mbuf):
    """``_pixel``'s plain loop for a strip of a plain view, ``LANES`` pixels in flight.

    The same operations in the same order as ``_pixel`` for every pixel (so the same bits), but one
    pass of the loop steps every lane: a pixel's step waits on its previous one (some 15 cycles), the
    lanes' steps do not wait on each other. A lane whose pixel is done takes the next one.
    ``zr``/``zi``: the reference then the critical orbit, one after the other (``ref_len`` entries of
    the first); ``px``, ``py``: the pixels' offsets from the centre per column and per row; ``series``
    where every pixel starts (``fractally.picture.skip.Series.arrays``); ``table`` the
    view's BLA table (jumps as in ``_pixel``), ``jumps`` whether it has entries: a literal, so the loop is
    compiled twice, and a julia set's has no trace of the look-up (it cost a julia view 8-20 %).
    """
    literally(jumps)
    skip_m = series[0]
    tar, tai, tbr, tbi, trp, trm, trexp, toff, tcnt = table
    n_plain, o_plain = _plain_level(toff, tcnt)
    cols = len(px)
    total = cols * len(py)
    crit_last = len(zr) - 1
    dr = np.zeros(LANES)
    di = np.zeros(LANES)
    cr = np.zeros(LANES)
    ci = np.zeros(LANES)
    base = np.zeros(LANES, np.int64)
    last = np.zeros(LANES, np.int64)
    m = np.zeros(LANES, np.int64)
    n = np.zeros(LANES, np.int64)
    at = np.full(LANES, -1, np.int64)
    following = 0
    busy = 0
    for k in range(LANES):
        if following < total:
            ox = px[following % cols]
            oy = py[following // cols]
            dr[k], di[k] = _series_delta(series, ox, oy)
            cr[k], ci[k] = (0.0, 0.0) if julia else (ox, oy)
            base[k], last[k], m[k], n[k], at[k] = 0, ref_len - 1, skip_m, skip_m, following
            following += 1
            busy += 1
    while busy > 0:
        for k in range(LANES):
            if at[k] < 0:
                continue
            a = base[k] + m[k]
            Zr = zr[a]
            Zi = zi[a]
            xr = Zr + dr[k]
            xi = Zi + di[k]
            z2 = xr * xr + xi * xi
            if not z2 <= r2 or n[k] >= max_iter:
                nbuf[at[k]] = n[k]
                mbuf[at[k]] = z2
                if following < total:  # the lane takes the next pixel
                    ox = px[following % cols]
                    oy = py[following // cols]
                    dr[k], di[k] = _series_delta(series, ox, oy)
                    cr[k], ci[k] = (0.0, 0.0) if julia else (ox, oy)
                    base[k], last[k], m[k], n[k], at[k] = 0, ref_len - 1, skip_m, skip_m, following
                    following += 1
                else:
                    at[k] = -1
                    busy -= 1
                continue
            if jumps:  # a compile-time constant: a julia set's loop has no look at all
                j = m[k] - 1
                if (j & PLAIN_MASK) == 0 and 0 <= (j >> PLAIN_LEVEL) < n_plain and n[k] + (1 << PLAIN_LEVEL) <= max_iter:
                    size = abs(dr[k]) + abs(di[k])
                    if size < trp[o_plain + (j >> PLAIN_LEVEL)]:  # a jump (as in ``_pixel``)
                        idx, steps = _plain_entry(trp, toff, tcnt, j, size, max_iter - n[k])
                        ur = tbr[idx] * cr[k] - tbi[idx] * ci[k]
                        ui = tbr[idx] * ci[k] + tbi[idx] * cr[k]
                        nr = (tar[idx] * dr[k] - tai[idx] * di[k]) + ur
                        ni = (tar[idx] * di[k] + tai[idx] * dr[k]) + ui
                        dr[k] = nr
                        di[k] = ni
                        m[k] += steps
                        n[k] += steps
                        continue
            d2 = dr[k] * dr[k] + di[k] * di[k]
            if z2 < d2 or a == last[k]:  # rebase onto the critical orbit, whose W₀ = 0
                dr[k] = xr
                di[k] = xi
                base[k] = ref_len
                last[k] = crit_last
                m[k] = 0
                Zr = zr[ref_len]
                Zi = zi[ref_len]
            tr = (Zr + Zr) + dr[k]
            ti = (Zi + Zi) + di[k]
            nr = (tr * dr[k] - ti * di[k]) + cr[k]
            ni = (tr * di[k] + ti * dr[k]) + ci[k]
            dr[k] = nr
            di[k] = ni
            m[k] += 1
            n[k] += 1


@ngjit
def escape_time_deep(julia: bool, ref: tuple, crit: tuple, scale_m: float, scale_e: int, extended: bool,
                     width: int, height: int, max_iter: int, escape_radius: float, row0: int, col0: int,
                     skip: tuple, table: tuple, counts: np.ndarray, smooth: np.ndarray) -> None:
    """Fill ``counts`` and ``smooth`` for the window at (row0, col0) of a deep view.

    ``ref``/``crit``: (re, im, mre, mim, exp) arrays of the reference and critical orbits. The
    view's scale is ``scale_m``·2^``scale_e``; a pixel's offset from the centre is docs/api.md's
    ``((j + 0.5 - width/2)·scale)/width`` (and minus the same in y) with ``scale_m`` for scale,
    then times 2^scale_e (plain views: ``scale_e`` = 0, ``scale_m`` the float64 scale).
    ``skip``: (m, kr, ki, ke, series), the steps every pixel skips (``fractally.picture.skip``); ``table``:
    the view's BLA table (``fractally.picture.bla``).
    """
    rows, cols = counts.shape
    r2 = escape_radius * escape_radius
    nbuf = np.empty(cols, np.int32)
    mbuf = np.empty(cols, np.float64)
    exponent = np.empty(CHUNK, np.float64)
    mantissa = np.empty(CHUNK, np.float64)
    inv_two_log2_r = _inv_two_log2(escape_radius, exponent, mantissa)
    half_w = width / 2
    half_h = height / 2
    if not extended:  # the plain loop, LANES pixels in flight, a strip of rows at a time
        zr = np.concatenate((ref[0], crit[0]))
        zi = np.concatenate((ref[1], crit[1]))
        px = np.empty(cols)
        for j in range(cols):
            px[j] = ((col0 + j) + 0.5 - half_w) * scale_m / width
        jumps = len(table[8]) > PLAIN_LEVEL and table[8][PLAIN_LEVEL] > 0
        strip = max(1, STRIP_PIXELS // cols)
        nstrip = np.empty(strip * cols, np.int32)
        mstrip = np.empty(strip * cols, np.float64)
        py = np.empty(strip)
        for r0 in range(0, rows, strip):
            h = min(strip, rows - r0)
            for i in range(h):
                py[i] = -((((row0 + r0 + i) + 0.5 - half_h) * scale_m) / width)
            if jumps:  # the loop compiled with the look for jumps, or (julia) without
                _plain_strip(julia, zr, zi, len(ref[0]), px, py[:h], skip[4], max_iter, r2, table, True,
                             nstrip[:h * cols], mstrip[:h * cols])
            else:
                _plain_strip(julia, zr, zi, len(ref[0]), px, py[:h], skip[4], max_iter, r2, table, False,
                             nstrip[:h * cols], mstrip[:h * cols])
            _finish_strip(nstrip[:h * cols], mstrip[:h * cols], cols, max_iter, inv_two_log2_r, exponent,
                          mantissa, counts, smooth, r0)
        return
    for i in range(rows):  # an extended view: one pixel at a time, offsets as mantissas and an exponent
        oy = -((((row0 + i) + 0.5 - half_h) * scale_m) / width)
        for j in range(cols):
            ox = ((col0 + j) + 0.5 - half_w) * scale_m / width
            mr, mi, e = _split(ox, oy)
            n, z2 = _pixel(julia, ref[0], ref[1], ref[2], ref[3], ref[4], crit[0], crit[1], crit[2], crit[3],
                           crit[4], mr, mi, e + scale_e, extended, max_iter, r2, skip[0], skip[1], skip[2], skip[3], skip[4], table)
            nbuf[j] = n
            mbuf[j] = z2
        _finish_strip(nbuf, mbuf, cols, max_iter, inv_two_log2_r, exponent, mantissa, counts[i:i + 1],
                      smooth[i:i + 1], 0)


def scale_parts(spec: RenderSpec) -> tuple[float, int, bool]:
    """(mantissa, exponent, extended) of a deep view's scale: extended when the pixel spacing is below
    2^EXTENDED_SPACING; plain views use the float64 scale itself (exponent 0)."""
    import gmpy2

    with gmpy2.context(precision=53):
        exact = gmpy2.mpfr(spec.deep.scale)
        e, m = gmpy2.frexp(exact)
    extended = e - math.log2(spec.width) < EXTENDED_SPACING
    if not extended:
        return spec.scale, 0, False
    return float(m), int(e), True


def render_window(spec: RenderSpec, orbits: tuple[Orbit, Orbit], row0: int, col0: int, rows: int,
                  cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts and smooth values for a window of a deep view, given its (reference, critical) orbits."""
    ref, crit = orbits
    counts = np.empty((rows, cols), dtype=np.uint32)
    smooth = np.empty((rows, cols), dtype=np.float32)
    if rows == 0 or cols == 0:
        return counts, smooth
    scale_m, scale_e, extended = scale_parts(spec)
    arrays = lambda o: (o.re, o.im, o.mre, o.mim, o.exp)  # noqa: E731
    s = skip_for(spec, ref)
    table = bla.table_for(spec, ref).arrays()
    escape_time_deep(spec.julia, arrays(ref), arrays(crit), scale_m, scale_e, extended, spec.width, spec.height,
                     spec.max_iter, spec.escape_radius, row0, col0, (s.m, s.kr, s.ki, s.ke, s.series.arrays()), table, counts, smooth)
    return counts, smooth
