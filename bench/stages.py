"""Where the stack's CPU goes: one job through the in-process service, CPU seconds per stage.

Runs the embedded service's core in this process (``Service`` with the in-process invoker and a
local-folder store, no HTTP) on the job of bench/e2e.py, with the stages wrapped to add up the CPU
time (``time.thread_time``) of the threads that run them: the kernel, tile encoding, tile writes,
tile reads and decoding (tiles not handed over in memory), colouring, deflate. "Other" is the rest
of the process's CPU time (parsing, bookkeeping, thread hand-offs, the result file). Median of
``--repeat`` jobs, each on a fresh store (emptied after its job, removed at the end).

    .venv/bin/python bench/stages.py [--fractal julia mandelbrot] [--size 4096] [--max-iter 1000] [--plot FILE.png]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import threading
import time

from common import file_create_cost, fresh_store, malloc_like_our_processes
from e2e import VIEWS

from fractally.jobs import tasks
from fractally.picture import compose
from fractally.config import Settings
from fractally.jobs.service import Service
from fractally.picture.spec import parse_spec
from fractally.store.local import LocalStore

STAGES = [  # (module or class, function, stage)
    (tasks, "render_tile_arrays", "kernel"),
    (tasks, "encode_tile", "encode tiles"),
    (LocalStore, "put", "write tiles"),
    (LocalStore, "get", "read tiles"),
    (tasks, "decode_tile", "decode tiles"),
    (compose, "colour_into", "colour"),
    (compose, "deflate_filtered", "deflate"),
]


TOTALS: dict[str, float] = collections.defaultdict(float)


def instrument(totals: dict[str, float]) -> None:
    lock = threading.Lock()
    for owner, name, stage in STAGES:
        inner = getattr(owner, name)

        def timed(*args, _inner=inner, _stage=stage, **kwargs):
            c0 = time.thread_time()
            try:
                return _inner(*args, **kwargs)
            finally:
                with lock:
                    totals[_stage] += time.thread_time() - c0

        setattr(owner, name, timed)


def one_job(spec_dict: dict, stores: str) -> tuple[float, float]:
    """(wall, CPU seconds) of one job on a new store under ``stores``, emptied after the job and
    removed at the end of the bench (as bench/e2e.py's ``service_run``, which says why)."""
    spec = parse_spec(spec_dict)
    with fresh_store(stores) as store_dir:
        service = Service.from_settings(Settings(store_url=store_dir))
        try:
            c0, t0 = time.process_time(), time.perf_counter()
            status, _ = service.submit(spec)
            while service.invoker.is_active(status.job.id):
                time.sleep(0.002)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            assert service.status(status.job.id).status == "done"
            return wall, cpu
        finally:
            service.close()


def stage_seconds(view: str, args: argparse.Namespace, stores: str) -> dict[str, float]:
    """Median CPU seconds per stage of ``args.repeat`` jobs of one view (each a fresh store)."""
    spec = {**VIEWS[view], "width": args.size, "height": args.size, "max_iter": args.max_iter}
    one_job({**spec, "width": 64, "height": 64}, stores)  # load the kernels
    runs = []
    for r in range(args.repeat):
        TOTALS.clear()
        wall, cpu = one_job({**spec, "center": [spec.get("center", [0.0, 0.0])[0] + (r + 1) * 1e-9,
                                                spec.get("center", [0.0, 0.0])[1]]}, stores)
        runs.append({**TOTALS, "other": cpu - sum(TOTALS.values()), "all": cpu, "wall": wall})
    med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in [s for _, _, s in STAGES] + ["other", "all"]}
    print(f"{args.size}x{args.size} {view}, max_iter {args.max_iter}: CPU seconds by stage, "
          f"median of {args.repeat} jobs (wall {statistics.median(r['wall'] for r in runs):.2f} s; "
          f"creating a file in the store's folder: {file_create_cost(stores):.0f} us of CPU)")
    for stage, seconds in med.items():
        share = "" if stage == "all" else f"{seconds / med['all']:6.1%}"
        print(f"  {stage:14} {seconds:6.3f}  {share}")
    print(f"  stack CPU / kernel CPU: {med['all'] / med['kernel']:.2f}x\n")
    return med


def main() -> None:
    malloc_like_our_processes()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fractal", default=["julia"], choices=sorted(VIEWS), nargs="+")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--plot", metavar="FILE.png", help="draw each view's CPU seconds as stacked stages")
    args = ap.parse_args()
    instrument(TOTALS)
    with tempfile.TemporaryDirectory(prefix="fractally-stages-") as stores:
        results = {view: stage_seconds(view, args, stores) for view in args.fractal}
    if args.plot:
        from common import plot_axes, save_plot

        fig, (ax,) = plot_axes(width=6.4, height=1.2 + 0.9 * len(results))
        names = [s for _, _, s in STAGES if any(r[s] > 0.002 for r in results.values())] + ["other"]
        colours = ["#1b5f93", "#58bc75", "#b7dc7c", "#f7a52a", "#e0600f", "#a8240c", "#9fb3d6", "#5b6fbd", "#888"]
        left = [0.0] * len(results)
        for name, colour in zip(names, colours):
            widths = [r[name] for r in results.values()]
            ax.barh(list(results), widths, left=left, color=colour, label=name)
            left = [a + b for a, b in zip(left, widths)]
        for i, r in enumerate(results.values()):
            ax.text(r["all"], i, f" {r['all'] / r['kernel']:.2f}x the kernel", va="center", fontsize=8)
        ax.invert_yaxis()
        ax.margins(x=0.25)
        ax.set_xlabel("CPU seconds of one job (median)", fontsize=8)
        ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
        save_plot(fig, args.plot, f"Where the stack's CPU goes: {args.size}² PNG job, max_iter {args.max_iter}, "
                  f"store in {tempfile.gettempdir()} (bench/stages.py --repeat {args.repeat})")


if __name__ == "__main__":
    main()
