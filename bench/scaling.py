"""Scaling: the embedded service with every core rendering vs the same service with one worker.

Two embedded services run side by side, one with the default workers (one per core) and one with
``FRACTALLY_WORKERS=1``; each round submits the same compute-bound job to both, one after the other
(the order alternates), each round a fresh picture (the centre moves by a fraction of a pixel, so
no tile is served from the store). Next to it, the bare kernel over the same tiles with one and
with all threads, to show what the machine itself gives at that moment (it is shared).

The job: the whole Mandelbrot set (centre -0.5,0, scale 3), 2048x2048, max_iter 20000 (about
3400 iterations a pixel: the kernel is nearly all of the work).

    .venv/bin/python bench/scaling.py [--size 2048] [--max-iter 20000] [--rounds 5] [--plot scaling.png]

``--plot`` draws throughput (megapixels a second) on one core and on all of them, the service next to
the bare kernel, and the scaling (1 worker / all cores) against the 1.8x target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from common import (bar_panel, embedded_service, malloc_like_our_processes, median, plot_axes, run_job, run_job_in,
                    save_plot)

from fractally.picture.compose import render_bands
from fractally.picture.spec import parse_spec


def job_spec(size: int, max_iter: int, shift: int) -> dict:
    return {"fractal": "mandelbrot", "center": [-0.5 + shift * 1e-9, 0.0], "scale": 3.0, "width": size,
            "height": size, "max_iter": max_iter}


def timed_job(base: str, store: str, spec: dict) -> float:
    t0 = time.perf_counter()
    run_job_in(base, store, spec)
    return time.perf_counter() - t0


def bare_kernel(spec: dict, threads: int) -> float:
    parsed = parse_spec(spec)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for _ in render_bands(parsed, pool):
            pass
    return time.perf_counter() - t0


def plot(runs: dict[str, list[float]], ratios: dict[str, list[float]], size: int, max_iter: int, cores: int,
         path: str) -> None:
    fig, (left, right) = plot_axes(2, width=4.6)
    mpx = size * size / 1e6
    names = ["service, 1 worker", "service, all cores", "bare kernel, 1 thread", "bare kernel, all cores"]
    throughput = [[mpx / t for t in runs[name]] for name in names]
    bar_panel(left, [n.replace(", ", "\n").replace("all cores", f"{cores} cores") for n in names],
              [median(v) for v in throughput], unit="", fmt="{:.1f}", runs=throughput,
              ours=lambda label: label.startswith("service"), title="throughput",
              ylabel="megapixels a second (higher is better)")
    bar_panel(right, list(ratios), [median(v) for v in ratios.values()], unit="", fmt="{:.2f}×",
              runs=list(ratios.values()), ours=lambda label: label == "service", target=1.8, target_label="target ≥ 1.8×",
              title=f"scaling: {cores} cores vs 1 (median of the rounds' ratios)", ylabel="speed-up")
    save_plot(fig, path, f"Mandelbrot {size}x{size}, max_iter {max_iter}, {cores} cores; "
                         f"median of {len(runs[names[0]])} rounds (dots: every round)")


def main() -> None:
    malloc_like_our_processes()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--max-iter", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--plot", help="draw throughput and scaling into this PNG")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    runs: dict[str, list[float]] = {"service, all cores": [], "service, 1 worker": [],
                                    "bare kernel, all cores": [], "bare kernel, 1 thread": []}
    with contextlib.ExitStack() as stack:
        stores = [stack.enter_context(tempfile.TemporaryDirectory()) for _ in range(2)]
        all_cores = stack.enter_context(embedded_service(stores[0]))
        one = stack.enter_context(embedded_service(stores[1], {"FRACTALLY_WORKERS": "1"}))
        for base in (all_cores, one):  # load the kernels before timing
            run_job(base, {**job_spec(64, 100, 0)})
        bare_kernel(job_spec(64, 100, 0), 1)
        for r in range(args.rounds):
            spec = job_spec(args.size, args.max_iter, r + 1)
            order = [("service, all cores", all_cores, stores[0]), ("service, 1 worker", one, stores[1])]
            for name, base, store in order if r % 2 == 0 else order[::-1]:
                runs[name].append(timed_job(base, store, spec))
            runs["bare kernel, all cores"].append(bare_kernel(spec, cores))
            runs["bare kernel, 1 thread"].append(bare_kernel(spec, 1))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in runs.items()), flush=True)
    service = [o / a for o, a in zip(runs["service, 1 worker"], runs["service, all cores"])]
    bare = [o / a for o, a in zip(runs["bare kernel, 1 thread"], runs["bare kernel, all cores"])]
    print(f"\nmandelbrot {args.size}x{args.size}, max_iter {args.max_iter}, {cores} cores, "
          f"median of {args.rounds} rounds (wall seconds, submit -> done for the service)")
    for name, values in runs.items():
        print(f"  {name:24} {median(values):7.2f} s   runs: {', '.join(f'{v:.2f}' for v in values)}")
    print(f"scaling, service:     {median(service):.2f}x  (1 worker / all cores, median of the rounds' ratios)")
    print(f"scaling, bare kernel: {median(bare):.2f}x  (what the machine gave the kernel in the same rounds)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "service_scaling": median(service), "bare_scaling": median(bare),
                       "cores": cores, "size": args.size, "max_iter": args.max_iter}, f, indent=1)
    if args.plot:
        plot(runs, {"service": service, "bare kernel": bare}, args.size, args.max_iter, cores, args.plot)


if __name__ == "__main__":
    main()
