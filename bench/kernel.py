"""Kernel throughput: pixel-iterations per second per core, three implementations side by side.

Reference workload (issue 3): julia c = -0.8+0.156i, centre 0, scale 3.2,
1920x1080, max_iter 1000. Each implementation runs on one core; the figure is
the sum of the escape counts (iterations actually performed) divided by the
wall time, median of ``--repeat`` runs. Ratios are against the naive loop.

    .venv/bin/python bench/kernel.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np

from fractally.picture.kernel import render_window
from fractally.picture.spec import parse_spec

SPEC = {"c": [-0.8, 0.156], "center": [0, 0], "scale": 3.2, "width": 1920, "height": 1080,
        "max_iter": 1000, "format": "msgpack"}


@numba.njit(nogil=True)
def naive_numba(cre, cim, cx0, cy0, scale, w, h, max_iter, r2, out):
    """The textbook scalar loop: the baseline a first implementation would write."""
    for i in range(h):
        py = cy0 - ((i + 0.5 - h / 2) * scale) / w
        for j in range(w):
            x = cx0 + ((j + 0.5 - w / 2) * scale) / w
            y = py
            n = 0
            while n < max_iter and x * x + y * y <= r2:
                x, y = (x * x - y * y) + cre, (2 * x) * y + cim
                n += 1
            out[i, j] = n


def numpy_counts(spec) -> np.ndarray:
    """Vectorised numpy, compacting the still-active pixels every step (its best honest form)."""
    w, h = spec.width, spec.height
    px = spec.center[0] + ((np.arange(w) + 0.5 - w / 2) * spec.scale) / w
    py = spec.center[1] - ((np.arange(h) + 0.5 - h / 2) * spec.scale) / w
    x, y = (a.ravel() for a in np.meshgrid(px, py))
    idx = np.arange(x.size)
    counts = np.zeros(x.size, dtype=np.uint32)
    r2 = spec.escape_radius ** 2
    cre, cim = spec.c
    for _ in range(spec.max_iter):
        keep = (x * x + y * y) <= r2
        if not keep.all():
            x, y, idx = x[keep], y[keep], idx[keep]
        if idx.size == 0:
            break
        x, y = (x * x - y * y) + cre, (2 * x) * y + cim
        counts[idx] += 1
    return counts.reshape(h, w)


def timed(fn, repeat: int) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--numpy-repeat", type=int, default=1, help="numpy is slow: fewer runs")
    args = ap.parse_args()
    spec = parse_spec(SPEC)
    out = np.empty((spec.height, spec.width), dtype=np.uint32)

    def naive():
        naive_numba(spec.c[0], spec.c[1], spec.center[0], spec.center[1], spec.scale, spec.width,
                    spec.height, spec.max_iter, spec.escape_radius ** 2, out)
        return out.copy()

    def ours():
        return render_window(spec, 0, 0, spec.height, spec.width)[0]

    naive(), ours()  # compile outside the timings
    rows = []
    t_naive, c_naive = timed(naive, args.repeat)
    t_ours, c_ours = timed(ours, args.repeat)
    t_np, c_np = timed(lambda: numpy_counts(spec), args.numpy_repeat)
    assert np.array_equal(c_naive, c_ours) and np.array_equal(c_np, c_ours), "implementations disagree"
    work = float(c_ours.astype(np.int64).sum())
    for name, t in (("naive numba loop", t_naive), ("fractally kernel", t_ours), ("numpy (vectorised)", t_np)):
        rows.append((name, t, work / t))
    base = rows[0][2]
    print(f"workload: {spec.width}x{spec.height} julia c={spec.c}, max_iter {spec.max_iter}, "
          f"{work:.3e} pixel-iterations, one core, median of {args.repeat} (numpy {args.numpy_repeat})")
    print(f"{'implementation':<22}{'seconds':>10}{'Mpix-it/s/core':>18}{'vs naive':>10}")
    for name, t, rate in rows:
        print(f"{name:<22}{t:>10.3f}{rate / 1e6:>18.1f}{rate / base:>9.2f}x")


if __name__ == "__main__":
    main()
