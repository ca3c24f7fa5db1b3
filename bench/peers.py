"""Peers: the same tiles, kernel and assembly under dask.distributed, Lithops and Ray, vs our stack.

Every system renders a job's tiles with ``fractally.tasks.render_tile`` (``render_tile_arrays``,
the same numba kernel, then ``encode_tile`` and a put into a local-folder store) and composes the
result with ``fractally.tasks.assemble`` (the same band-by-band PNG writer), one task per tile,
two workers (one per core):

* **fractally**: the embedded service (``fractally serve``), HTTP submit -> its result object is in
  the store (``common.run_job_in``);
* **dask**: ``distributed.LocalCluster`` (2 worker processes, 1 thread each), ``client.map`` over
  the tiles, then assemble in the driver;
* **lithops**: ``LocalhostExecutor`` (its localhost backend and storage, 2 worker processes),
  ``map`` over the tiles, then assemble in the driver. Its localhost backend starts a fresh
  interpreter for every call (about 0.4 s a call on our machine even for an empty function), so a
  round takes many minutes: ``--peers`` picks the peers to run;
* **ray**: ``ray.init(num_cpus=2)``, one remote task per tile, then assemble in the driver.

Two jobs: **big tiles**, the whole Mandelbrot set at 8192x8192, max_iter 1000 (1024 tiles of
256x256, tens of milliseconds each: the kernel and the per-pixel work dominate), and **tiny tiles**,
the Julia set at 800x640 with tile_size 16 (2000 tiles of 16x16: the cost of a task dominates).
All systems are started and warmed up first (clusters started, kernels loaded in every worker;
not timed); then each round runs every system on a fresh picture (the centre moves by a fraction
of a pixel, so no tile is reused), in a rotating order. Figures are medians of the rounds; a
system that cannot be imported or started here is skipped with the reason.

    .venv/bin/python bench/peers.py [--rounds 3] [--json out.json] [--plot docs/peers.png]

The peers come from the ``bench`` extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

from common import embedded_service, median, run_job_in

from fractally import jobs, tasks
from fractally.spec import parse_spec
from fractally.store import open_store

WORKERS = os.cpu_count() or 1

JOBS = {
    "big tiles": {"fractal": "mandelbrot", "center": [-0.5, 0.0], "scale": 3.0, "width": 8192, "height": 8192,
                  "max_iter": 1000},
    "tiny tiles": {"c": [-0.8, 0.156], "center": [0.0, 0.0], "width": 800, "height": 640, "tile_size": 16,
                   "max_iter": 1000},
}
WARM = {"c": [-0.8, 0.156], "width": 64, "height": 64, "tile_size": 16, "max_iter": 50}


def shifted(spec: dict, round_no: int) -> dict:
    """The same picture moved by ``round_no`` nanounits: new tiles, the same work."""
    x, y = spec.get("center", [0.0, 0.0])
    return {**spec, "center": [x + round_no * 1e-9, y]}


_stores: dict[str, Any] = {}


def tile_work(store_dir: str, task: dict) -> int:
    """One tile, in a peer's worker process: exactly what render_tile does in ours."""
    store = _stores.get(store_dir) or _stores.setdefault(store_dir, open_store(store_dir))
    return tasks.render_tile(task, store)["tile"]


class Peer:
    """A framework that maps ``tile_work`` over a job's tiles; the driver then assembles."""

    name = "peer"

    def __init__(self, store_dir: str) -> None:
        self.store_dir = store_dir
        self.store = open_store(store_dir)

    def map_tiles(self, args: list[dict]) -> list[int]:
        raise NotImplementedError

    def run(self, spec: dict) -> float:
        t0 = time.perf_counter()
        job, _ = jobs.create(self.store, parse_spec(spec))
        done = self.map_tiles([job.tile_task(i) for i in range(job.tiles_total)])
        if len(done) != job.tiles_total:
            raise RuntimeError(f"{self.name}: {len(done)} of {job.tiles_total} tiles")
        result = tasks.assemble(job.id, self.store)
        if result["status"] != "done":
            raise RuntimeError(f"{self.name}: assemble answered {result}")
        return time.perf_counter() - t0

    def close(self) -> None:
        pass


class Dask(Peer):
    name = "dask"

    def __init__(self, store_dir: str) -> None:
        super().__init__(store_dir)
        from dask.distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                    dashboard_address=":0", silence_logs=logging.ERROR)
        self.client = Client(self.cluster)

    def map_tiles(self, args: list[dict]) -> list[int]:
        return self.client.gather(self.client.map(tile_work, [self.store_dir] * len(args), args, pure=False))

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


class Lithops(Peer):
    name = "lithops"

    def __init__(self, store_dir: str) -> None:
        super().__init__(store_dir)
        import lithops

        self.executor = lithops.LocalhostExecutor(
            config={"lithops": {"log_level": "WARNING"},
                    "localhost": {"runtime": sys.executable, "worker_processes": WORKERS}})

    def map_tiles(self, args: list[dict]) -> list[int]:
        # include_modules=None: workers import fractally from this environment (as ours do), so
        # numba finds its cached kernel; the default would ship the package's source with each job.
        self.executor.map(tile_work, [(self.store_dir, a) for a in args], include_modules=None)
        return self.executor.get_result()

    def close(self) -> None:
        self.executor.clean()


class Ray(Peer):
    name = "ray"

    def __init__(self, store_dir: str) -> None:
        super().__init__(store_dir)
        import ray

        self.ray = ray
        ray.init(num_cpus=WORKERS, include_dashboard=False, object_store_memory=256 * 2**20,
                 log_to_driver=False, logging_level="ERROR")
        self.remote = ray.remote(tile_work)

    def map_tiles(self, args: list[dict]) -> list[int]:
        return self.ray.get([self.remote.remote(self.store_dir, a) for a in args])

    def close(self) -> None:
        self.ray.shutdown()


class Ours:
    """The embedded service: submit over HTTP -> the result object is in its store."""

    name = "fractally"

    def __init__(self, base: str, store_dir: str) -> None:
        self.base, self.store_dir = base, store_dir

    def run(self, spec: dict) -> float:
        t0 = time.perf_counter()
        run_job_in(self.base, self.store_dir, spec)
        return time.perf_counter() - t0

    def close(self) -> None:
        pass


def start(make: Callable[[], Any], name: str) -> Any | None:
    try:
        system = make()
        system.run(WARM)  # workers up, kernels loaded
        return system
    except Exception as err:  # a peer that does not install or start here is skipped, with the reason
        print(f"skipping {name}: {type(err).__name__}: {err}", file=sys.stderr)
        traceback.print_exc(limit=2, file=sys.stderr)
        return None


def plot(results: dict[str, dict[str, float]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    job_names = list(results)
    systems = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(job_names), figsize=(4.2 * len(job_names), 3.6))
    for ax, job in zip(axes, job_names):
        values = [results[job].get(s, float("nan")) for s in systems]
        bars = ax.bar(systems, values, color=["#1b5f93" if s == "fractally" else "#9fb3d6" for s in systems])
        ax.bar_label(bars, fmt="%.2f s", fontsize=8)
        ax.set_title(f"{job}: {JOBS[job]['width']}x{JOBS[job]['height']}, "
                     f"tile {JOBS[job].get('tile_size', 256)}", fontsize=9)
        ax.set_ylabel("wall seconds, submit to result (lower is better)", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"Same tiles, same kernel, same assembly; {WORKERS} workers; median of rounds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    ap.add_argument("--peers", nargs="+", default=["dask", "lithops", "ray"], choices=["dask", "lithops", "ray"])
    ap.add_argument("--json", help="write every run's time to this file")
    ap.add_argument("--plot", help="draw the medians into this PNG")
    args = ap.parse_args()
    kinds = {"dask": Dask, "lithops": Lithops, "ray": Ray}
    runs: dict[str, dict[str, list[float]]] = {job: {} for job in args.jobs}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="fractally-peers-"))
        ours = os.path.join(tmp, "fractally")
        base = stack.enter_context(embedded_service(ours))
        systems: list[Any] = [start(lambda: Ours(base, ours), "fractally")]
        for name in args.peers:
            systems.append(start(lambda: kinds[name](os.path.join(tmp, name)), name))
        systems = [s for s in systems if s is not None]
        for system in systems:
            stack.callback(system.close)
        for r in range(args.rounds):
            for job in args.jobs:
                spec = shifted(JOBS[job], r + 1)
                order = systems[r % len(systems):] + systems[:r % len(systems)]
                for system in order:
                    runs[job].setdefault(system.name, []).append(system.run(spec))
                print(f"round {r + 1}, {job}: "
                      + ", ".join(f"{s.name} {runs[job][s.name][-1]:.2f} s" for s in systems), flush=True)
    medians = {job: {name: median(v) for name, v in by.items()} for job, by in runs.items()}
    print(f"\nwall seconds, submit -> result; median of {args.rounds} rounds; {WORKERS} workers each")
    for job, by in medians.items():
        peers = {k: v for k, v in by.items() if k != "fractally"}
        print(f"{job} ({JOBS[job]['width']}x{JOBS[job]['height']}, tile {JOBS[job].get('tile_size', 256)}):")
        for name, value in by.items():
            ratio = "" if name == "fractally" else f"   fractally / {name}: {by['fractally'] / value:.2f}x"
            print(f"  {name:10} {value:7.2f} s   runs: {', '.join(f'{x:.2f}' for x in runs[job][name])}{ratio}")
        if peers:
            best = min(peers, key=peers.get)
            print(f"  fractally / best peer ({best}): {by['fractally'] / peers[best]:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "medians": medians, "workers": WORKERS, "jobs": JOBS}, f, indent=1)
    if args.plot:
        plot(medians, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
