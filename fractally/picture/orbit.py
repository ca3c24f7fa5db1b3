"""Reference orbits of deep views: computed once per job in arbitrary precision, shared through the store.

A deep view's pixels are iterated as small differences from one *reference orbit* Z₀, Z₁, … (the
orbit of the view's centre; ``fractally.picture.perturb``). The orbit is the one computation that needs
more than float64: it is done with gmpy2 (MPFR/MPC), whose every operation is correctly rounded,
so the same inputs give the same bits on every machine. Measured against mpmath and python-flint
(docs/benchmarks.md, "Deep views"): gmpy2 steps 13 times faster than mpmath at 200 bits and is
level with flint's arb beyond 1,000 bits, and MPFR's correct rounding is a documented guarantee.

``Service.submit`` computes a job's orbits before its tiles are sent and puts them in the store
under a key made of their inputs (``orbit_key``); every render_tile reads them from there (kept in
memory per process). A render without a store (the CLI, the synchronous render) computes them in
memory. Recomputing anywhere gives the same bytes, so a lost object only costs time.

Each entry is kept twice: as the nearest float64 (``re``, ``im``: the fast path) and as a float64
pair with a shared binary exponent (``mre``, ``mim``, ``exp``: Z = (mre + i·mim)·2^exp) for the
extended-exponent path, which must see entries below float64's range (an orbit passing within
1e-400 of 0 beside a deep minibrot).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar
from decimal import Decimal

import msgpack
import numpy as np

from fractally.errors import KeyNotFound
from fractally.picture.spec import RenderSpec
from fractally.store import ObjectStore

ORBIT_VERSION = 1
#: Bits beyond the pixel spacing's: the orbit stays a faithful shadow of the exact one for the whole view.
GUARD_BITS = 64
#: Orbits kept in memory per process (a 50,000-step orbit is 2 MB).
ORBITS_KEPT = 8
#: Below this magnitude an entry's float64 is not used (the extended path reads its exponent form).
TINY = 2.0**-960
#: The exponent of an exactly zero entry: far below any other, so it never sets a sum's scale.
ZERO_EXPONENT = -(2**40)


@dataclass(frozen=True)
class Orbit:
    """Z₀ … Z_{n-1} of one reference: stops at max_iter or after the first entry with |Z|² > R²."""

    re: np.ndarray
    im: np.ndarray
    mre: np.ndarray
    mim: np.ndarray
    exp: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.re)

    def head(self, n: int) -> "Orbit":
        """Z₀ … Z_{n-1} (views of the same arrays): a reference cut at its period (``fractally.picture.period``)."""
        return Orbit(self.re[:n], self.im[:n], self.mre[:n], self.mim[:n], self.exp[:n])

    def to_bytes(self) -> bytes:
        return msgpack.packb({"v": ORBIT_VERSION, "re": self.re.tobytes(), "im": self.im.tobytes(),
                              "mre": self.mre.tobytes(), "mim": self.mim.tobytes(),
                              "exp": self.exp.astype("<i8").tobytes()})

    @classmethod
    def from_bytes(cls, data: bytes) -> "Orbit":
        obj = msgpack.unpackb(data)
        if obj.get("v") != ORBIT_VERSION:
            raise ValueError("an orbit of another format version")
        arrays = [np.frombuffer(obj[k], "<f8").copy() for k in ("re", "im", "mre", "mim")]
        return cls(*arrays, np.frombuffer(obj["exp"], "<i8").astype(np.int64))


@dataclass(frozen=True)
class OrbitInputs:
    """Everything an orbit depends on (its store key is their hash)."""

    start: tuple[str, str]
    c: tuple[str, str]
    precision: int
    max_iter: int
    escape_radius: float

    def key(self) -> str:
        text = json.dumps({"v": ORBIT_VERSION, "start": self.start, "c": self.c, "prec": self.precision,
                           "max_iter": self.max_iter, "R": self.escape_radius}, separators=(",", ":"))
        return f"orbits/{hashlib.sha256(text.encode()).hexdigest()[:32]}.orbit"


def precision_bits(spec: RenderSpec) -> int:
    """MPFR precision for a deep view: the bits that tell its pixels apart, plus the coordinates' size, plus guards."""
    assert spec.deep is not None
    spacing = Decimal(spec.deep.scale) / spec.width
    below = -(spacing.adjusted() + 1) * math.log2(10)  # -log2(spacing), to within a few bits
    magnitude = max(1.0, abs(spec.center[0]), abs(spec.center[1]), *(map(abs, spec.c) if spec.c else ()))
    return int(below) + math.ceil(math.log2(magnitude)) + GUARD_BITS


def image_radius(spec: RenderSpec):
    """|δc|max, the largest offset of any pixel of the *whole image* from the centre (never a tile's):
    half its diagonal, 1 % over for rounding, as an MPFR number of 64 bits. The skip, the BLA table and
    the view's period are bounded by it, so each is one per view, the same for every tile."""
    import gmpy2

    assert spec.deep is not None
    with gmpy2.context(precision=64):
        scale = gmpy2.mpfr(spec.deep.scale)
        return scale * gmpy2.sqrt(gmpy2.mpfr(spec.width**2 + spec.height**2)) / (2 * spec.width) * 1.01


def inputs_for(spec: RenderSpec) -> tuple[OrbitInputs, OrbitInputs | None]:
    """The orbits a deep view uses: the reference, and for a julia set the critical orbit (from 0) that
    pixels rebase onto (``fractally.picture.perturb``); for a mandelbrot the reference starts at 0 and is both."""
    deep = spec.deep
    assert deep is not None
    bits = precision_bits(spec)
    if spec.julia:
        assert deep.c is not None
        return (OrbitInputs(deep.center, deep.c, bits, spec.max_iter, spec.escape_radius),
                OrbitInputs(("0", "0"), deep.c, bits, spec.max_iter, spec.escape_radius))
    return OrbitInputs(("0", "0"), deep.center, bits, spec.max_iter, spec.escape_radius), None


def compute(inputs: OrbitInputs) -> Orbit:
    """Iterate Z ← Z² + c from ``start`` in MPFR/MPC at ``inputs.precision`` bits (round to nearest)."""
    import gmpy2

    n_max = inputs.max_iter
    re = np.empty(n_max)
    im = np.empty(n_max)
    tiny: list[tuple[int, object]] = []  # entries too small for float64: their exact value
    with gmpy2.context(precision=inputs.precision):
        r2 = gmpy2.mpfr(inputs.escape_radius) ** 2
        c = gmpy2.mpc(gmpy2.mpfr(inputs.c[0]), gmpy2.mpfr(inputs.c[1]))
        z = gmpy2.mpc(gmpy2.mpfr(inputs.start[0]), gmpy2.mpfr(inputs.start[1]))
        n = 0
        while n < n_max:
            x, y = float(z.real), float(z.imag)
            re[n], im[n] = x, y
            if abs(x) < TINY and abs(y) < TINY and not z == 0:
                tiny.append((n, z))
            n += 1
            if gmpy2.norm(z) > r2:
                break
            z = z * z + c
        re, im = re[:n].copy(), im[:n].copy()
        mre, exps = np.frexp(np.maximum(np.abs(re), np.abs(im)))
        mre = np.ldexp(re, -exps)
        mim = np.ldexp(im, -exps)
        exps = exps.astype(np.int64)
        exps[(re == 0) & (im == 0)] = ZERO_EXPONENT  # a zero never outweighs another term (fractally.picture.perturb)
        for at, value in tiny:  # the shared exponent from the exact value, not the underflowed float
            e = max(gmpy2.frexp(value.real)[0] if value.real != 0 else ZERO_EXPONENT,
                    gmpy2.frexp(value.imag)[0] if value.imag != 0 else ZERO_EXPONENT)
            exps[at] = e
            mre[at] = float(gmpy2.mul_2exp(value.real, -e))
            mim[at] = float(gmpy2.mul_2exp(value.imag, -e))
    return Orbit(re, im, mre, mim, exps)


_cache: OrderedDict[str, Orbit] = OrderedDict()
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def orbit(inputs: OrbitInputs, store: ObjectStore | None = None) -> Orbit:
    """The orbit for ``inputs``: from this process's memory, else the store, else computed (and stored).

    One computation per process and key at a time: other threads wait for it instead of repeating it.
    """
    key = inputs.key()
    with _guard:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        with _guard:
            found = _cache.get(key)
        if found is None:
            found = _load(store, key)
            if found is None:
                found = compute(inputs)
                if store is not None:
                    store.put(key, found.to_bytes())
        with _guard:
            _cache[key] = found
            while len(_cache) > ORBITS_KEPT:
                _cache.popitem(last=False)
            _locks.pop(key, None)
    return found


T = TypeVar("T")


class PerView(Generic[T]):
    """What ``make(spec, ref)`` computes once per view (the skip, the BLA table), kept for the last
    ``kept`` views of this process: every tile of a job asks for the same one."""

    def __init__(self, make: Callable[[RenderSpec, Orbit], T], kept: int) -> None:
        self.make, self.kept = make, kept
        self._kept: OrderedDict[tuple, T] = OrderedDict()
        self._guard = threading.Lock()

    def __call__(self, spec: RenderSpec, ref: Orbit) -> T:
        key = (inputs_for(spec)[0].key(), spec.deep.scale, spec.width, spec.height, len(ref))  # a cut reference is another
        with self._guard:
            found = self._kept.get(key)
        if found is None:
            found = self.make(spec, ref)
            with self._guard:
                self._kept[key] = found
                while len(self._kept) > self.kept:
                    self._kept.popitem(last=False)
        return found


def _load(store: ObjectStore | None, key: str) -> Orbit | None:
    if store is None:
        return None
    try:
        return Orbit.from_bytes(store.get(key))
    except KeyNotFound:
        return None
    except ValueError:  # written by another format version: recomputed and replaced
        return None


def orbits_for(spec: RenderSpec, store: ObjectStore | None = None) -> tuple[Orbit, Orbit]:
    """(reference, critical orbit) of a deep view; for a mandelbrot both are the one reference.

    A job of one tile (an explorer's deep tile) keeps them out of ``store``: no other tile reads them,
    and the tile itself is what a repeated request finds."""
    if store is not None and _one_tile(spec):
        store = None
    primary, critical = inputs_for(spec)
    ref = orbit(primary, store)
    return ref, (orbit(critical, store) if critical is not None else ref)


def prepare(spec: RenderSpec, store: ObjectStore) -> None:
    """Compute a deep job's orbits into the store before its tiles are sent (no-op for float64 views, and
    for a job of one tile, which computes them where it renders: ``orbits_for``)."""
    if spec.deep is not None and not _one_tile(spec):
        orbits_for(spec, store)


def _one_tile(spec: RenderSpec) -> bool:
    """The job is one tile: no other tile reads its orbits."""
    return spec.width <= spec.tile_size and spec.height <= spec.tile_size
