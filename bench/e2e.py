"""The whole stack vs the bare kernel: what the service costs on top of the pixels.

A 4096x4096 job (max_iter 500 by default; docs/benchmarks.md uses 1000) through the
embedded service (HTTP submit → in-process fan-out → tiles in the local store → assemble → PNG result; done when
the result object is in the store, confirmed over HTTP) against the bare kernel rendering the same tiles in one
process on the same cores (a thread pool of one thread per core, no encoding, no store).

Each round runs, in this order: the bare kernel; the same picture without the stack (the kernel,
colouring and deflate into a file on the same cores, in this process: ``render_image_file``, what
``fractally render`` does; with ``--format msgpack`` the msgpack file); a fresh server on a fresh store, timed through its first big job and
then the same job again (``service_run``). The ratios are medians of each round's pairs: the
server's second job against the bare kernel (the figure of issue 6), its first job against the
bare kernel (what a start still running adds), and the second job against the picture without the stack (the
stack's own overhead, apart from the cost of the picture itself).

    .venv/bin/python bench/e2e.py [--fractal julia mandelbrot] [--size 4096] [--max-iter 500] [--repeat 3]
                                  [--format png|msgpack] [--plot FILE.png]

The store is a fresh folder under $TMPDIR (default /tmp) per run, emptied after it and removed at
the end (see ``service_run``): ``TMPDIR=/dev/shm`` puts them on tmpfs, which separates the stack's
own cost from the disk's.

``--fractal julia`` is the default view (c = -0.8+0.156i, about 26 iterations a pixel at
max_iter 1000: light, so per-pixel costs dominate); ``--fractal mandelbrot`` is the whole set
(centre -0.5,0, scale 3), where the points inside run to max_iter; ``seahorse`` zooms into the
filaments of the Mandelbrot set's Seahorse Valley and ``interior`` looks at the main cardioid,
where almost every pixel runs to max_iter: from light to compute-bound. The service adds a
roughly fixed cost per pixel (store, colour, compress), so the ratio falls as the iterations a
pixel rise; each view prints its mean iterations a pixel and ``--plot`` draws the ratio against it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from common import (SERVERS, cpu_seconds, embedded_service, file_create_cost, fresh_store, malloc_like_our_processes,
                    median, run_job, run_job_in)

from fractally.picture.compose import render_bands, render_image_file
from fractally.picture.spec import parse_spec

VIEWS = {"julia": {"c": [-0.8, 0.156]},
         "mandelbrot": {"fractal": "mandelbrot", "center": [-0.5, 0.0], "scale": 3.0},
         "seahorse": {"fractal": "mandelbrot", "center": [-0.7436, 0.1318], "scale": 0.02},
         "interior": {"fractal": "mandelbrot", "center": [-0.2, 0.0], "scale": 0.6}}


def mean_iterations(spec_dict: dict, workers: int) -> float:
    """Mean escape count a pixel of the view: how much kernel work each pixel carries."""
    spec = parse_spec(spec_dict)
    total = 0
    with ThreadPoolExecutor(workers) as pool:
        for parts in render_bands(spec, pool):
            total += sum(int(counts.sum(dtype="int64")) for counts, _ in parts)
    return total / spec.pixels


def bare_kernel(spec_dict: dict, workers: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of rendering every tile."""
    spec = parse_spec(spec_dict)
    c0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for _ in render_bands(spec, pool):
            pass
    return time.perf_counter() - t0, time.process_time() - c0


def bare_picture(spec_dict: dict, workers: int, stores: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of making the job's picture in one process, no store:
    the CLI's path, into a file in a new folder under ``stores`` (``fresh_store``, as the service's)."""
    spec = parse_spec(spec_dict)
    with fresh_store(stores) as folder, ThreadPoolExecutor(workers) as pool:
        c0, t0 = time.process_time(), time.perf_counter()
        render_image_file(spec, os.path.join(folder, f"picture.{spec.format}"), pool)
        return time.perf_counter() - t0, time.process_time() - c0


def service_run(spec_dict: dict, stores: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """(wall seconds, CPU seconds of the server's processes) from submit to done of a fresh server's
    first big job and of the same job next, in a new store under ``stores`` (``fresh_store``).

    The first job (its centre moved by 1e-9, so its tiles are its own) starts as soon as the server has
    answered a small job, while the server's background loader (``functions/api/server.py``,
    ``_warm_kernels``) may not have loaded every kernel yet; it waits while a job runs, and the first
    big job still touches memory the process has not used before: what a user's first job after a start
    meets. The second is the job a running server does; it is the one
    set against the bare kernel, which runs in this process after the same work has warmed it
    (``mean_iterations``, earlier rounds).

    The store's files are emptied after the run and removed only at the end of the bench: this
    VM's ext4 has no journal, and there a new file skips every inode freed in its
    block group in the last minute or more (ext4's ``recently_deleted`` check), one lookup each.
    Deleting the last run's 256 tiles made each tile of the next run cost 0.3-0.4 ms of CPU in
    ``open`` instead of ~0.02 ms (perf: ``find_inode_bit`` -> ``recently_deleted``): a cost of
    the bench, not of the service, whose store does not delete a job's worth of files before
    every job.
    """
    x, y = spec_dict.get("center", [0.0, 0.0])
    with fresh_store(stores) as store, embedded_service(store) as base:
        run_job(base, {**spec_dict, "width": 64, "height": 64})  # compile/load kernels before timing
        pid = SERVERS[base].pid
        timed = []
        for spec in ({**spec_dict, "center": [x + 1e-9, y]}, spec_dict):
            c0, t0 = cpu_seconds(pid), time.perf_counter()
            run_job_in(base, store, spec)
            timed.append((time.perf_counter() - t0, cpu_seconds(pid) - c0))
        return timed[0], timed[1]


#: The runs of each round, in order, and the ratios printed (numerator, denominator).
RUNS = {"bare": "bare kernel (thread pool over tiles)",
        "picture": "picture: the same file without the stack (CLI's path)",
        "first": "first: a job right after the server's start",
        "stack": "stack: the server's next job (submit -> done)"}
RATIOS = {"ratio": ("stack", "bare"), "ratio_first": ("first", "bare"), "ratio_picture": ("stack", "picture")}


def measure(view: str, args: argparse.Namespace, workers: int, stores: str) -> dict[str, list[float]]:
    """Interleaved rounds (bare kernel, bare picture, service) for one view: wall and CPU seconds of each run."""
    spec = {**VIEWS[view], "width": args.size, "height": args.size, "max_iter": args.max_iter,
            "format": args.format}
    bare_kernel({**spec, "width": 64, "height": 64}, workers)  # compile
    iterations = mean_iterations(spec, workers)
    runs: dict[str, list[float]] = {f"{kind}{cpu}": [] for kind in RUNS for cpu in ("", "_cpu")}
    runs["iterations"] = [iterations]
    create_us = file_create_cost(stores)
    for _ in range(args.repeat):
        bare, picture = bare_kernel(spec, workers), bare_picture(spec, workers, stores)
        for kind, (wall, cpu) in zip(RUNS, (bare, picture, *service_run(spec, stores))):
            runs[kind].append(wall)
            runs[f"{kind}_cpu"].append(cpu)
    for name, (num, den) in RATIOS.items():
        runs[name] = [x / y for x, y in zip(runs[num], runs[den])]
        runs[f"{name}_cpu"] = [x / y for x, y in zip(runs[f"{num}_cpu"], runs[f"{den}_cpu"])]
    print(f"{args.size}x{args.size} {view} ({iterations:.0f} iterations a pixel), max_iter {args.max_iter}, "
          f"{args.format}, {workers} cores, median of {args.repeat}; store in {tempfile.gettempdir()} "
          f"(creating a file there: {create_us:.0f} us of CPU before the runs, {file_create_cost(stores):.0f} after)")
    for kind, label in RUNS.items():
        print(f"  {label:58} wall {median(runs[kind]):5.2f} s, CPU {median(runs[f'{kind}_cpu']):5.2f} s   "
              f"(walls: {', '.join(f'{x:.2f}' for x in runs[kind])})")
    for name, (num, den) in RATIOS.items():
        print(f"  {num} / {den}: {median(runs[name]):.3f}x wall, {median(runs[f'{name}_cpu']):.3f}x CPU")
    print("  (medians of the paired runs' ratios; CPU: the work the stack adds, which other tenants do not move)\n")
    return runs


def main() -> None:
    malloc_like_our_processes()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fractal", default=["julia"], choices=sorted(VIEWS), nargs="+")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--max-iter", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--format", default="png", choices=["png", "msgpack"])
    ap.add_argument("--plot", metavar="FILE.png", help="draw the paired ratios (wall and CPU) per view")
    args = ap.parse_args()
    workers = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="fractally-e2e-") as stores:
        results = {view: measure(view, args, workers, stores) for view in args.fractal}
    if args.plot:
        from common import bar_panel, plot_axes, save_plot

        from common import OTHER, OURS, TARGET

        fig, (ax, curve) = plot_axes(2, width=max(4.4, 2.0 * len(results)), height=4.0)
        kinds = {"ratio": "wall", "ratio_cpu": "CPU", "ratio_picture": "wall vs\npicture"}
        labels = [f"{view}\n{kind}" for view in results for kind in kinds.values()]
        keys = [(view, key) for view in results for key in kinds]
        bar_panel(ax, labels, [median(results[v][k]) for v, k in keys], unit="", fmt="{:.2f}x",
                  ours=lambda label: "picture" not in label, runs=[results[v][k] for v, k in keys], target=1.1,
                  ylabel="service / bare kernel (pale: / the same picture)")  # the target is named in the legend
        ax.tick_params(axis="x", labelsize=6)
        for key, label, colour, style in (("ratio", "wall", OURS, "o-"), ("ratio_cpu", "CPU", OURS, "o--"),
                                          ("ratio_picture", "wall vs the same picture", OTHER, "o-")):
            points = sorted((results[v]["iterations"][0], median(results[v][key]), v) for v in results)
            curve.plot([p[0] for p in points], [p[1] for p in points], style, color=colour, label=label)
            if key == "ratio":
                for x, y, view in points:
                    curve.annotate(view, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        curve.axhline(1.1, color=TARGET, linestyle="--", linewidth=1, label="target ≤ 1.1x")
        curve.set_xscale("log")
        curve.margins(x=0.2, y=0.15)
        curve.set_xlabel("mean iterations a pixel (log scale)", fontsize=8)
        curve.set_ylabel("service / baseline", fontsize=8)
        curve.legend(fontsize=7)
        curve.set_title("overhead against work a pixel", fontsize=9)
        save_plot(fig, args.plot, f"Stack overhead: {args.size}² {args.format} job, max_iter {args.max_iter}, "
                  f"{workers} cores, store in {tempfile.gettempdir()} (bench/e2e.py --repeat {args.repeat})")


if __name__ == "__main__":
    main()
