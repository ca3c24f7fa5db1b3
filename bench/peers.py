"""Peers: the same tiles, kernel and assembly under dask.distributed, Lithops and Ray, vs our stack.

Every system renders a job's tiles with ``fractally.tasks.render_tile`` (``render_tile_arrays``,
the same numba kernel, then ``encode_tile`` and a put into a local-folder store) and composes the
result with ``fractally.tasks.assemble`` (the same band-by-band PNG writer), one task per tile
(Lithops: a batch of tiles per call, see below), two workers (one per core):

* **fractally**: the embedded service (``fractally serve``), HTTP submit -> its result object is in
  the store (``common.run_job_in``);
* **dask**: ``distributed.LocalCluster`` (2 worker processes, 1 thread each), ``client.map`` over
  the tiles, then assemble in the driver;
* **lithops**: ``LocalhostExecutor`` (localhost compute and storage, 2 worker processes), ``map``,
  then assemble in the driver. Lithops runs every call in a process of its own: its default localhost
  backend (``version: 2``) starts a fresh interpreter per call, and both versions fork a throwaway
  ``JobRunner`` per call that unpickles the function, so ``import fractally`` (numba, numpy, Pillow)
  is paid again by every call (about 0.5 s of a worker a call here, mostly numba's import and
  loading the cached kernels on the first tile of a process). So, as a Lithops user would, the tiles are
  dealt round-robin to ``--lithops-calls`` calls (default: one per worker) and run on the
  ``version: 1`` runner (one interpreter per job, ``worker_processes`` forked workers; version 2, the
  default, also hung now and then on an executor's later ``map``). ``--lithops-calls 0`` is one call
  per tile (minutes a round), ``--lithops-version 2`` Lithops' default backend;
* **ray**: ``ray.init(num_cpus=2)``, one remote task per tile, then assemble in the driver.

Two jobs: **big tiles**, the whole Mandelbrot set at 8192x8192, max_iter 1000 (1024 tiles of
256x256, tens of milliseconds each: the kernel and the per-pixel work dominate), and **tiny tiles**,
the Julia set at 800x640 with tile_size 16 (2000 tiles of 16x16: the cost of a task dominates).
All systems are started and warmed up first (clusters started, kernels loaded in every worker;
not timed); then each round runs every system on a fresh picture (the centre moves by a fraction
of a pixel, so no tile is reused), in a rotating order. Figures are medians of the rounds; a
system that cannot be imported or started here is skipped with the reason.

A run that takes longer than ``--timeout`` seconds (default 600) is stopped, reported as such, and
that system is left out of the remaining runs, so the script always ends by itself.

    .venv/bin/python bench/peers.py [--rounds 3] [--peers dask ray lithops] [--json out.json]
                                    [--plot docs/peers.png] [--timeout 600] [--lithops-calls N]

The peers come from the ``bench`` extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

from common import bar_panel, embedded_service, median, plot_axes, run_job_in, save_plot

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


def tile_batch(store_dir: str, task: dict, indices: list[int]) -> list[int]:
    """Several tiles in one Lithops call: the job's task with each tile index in turn."""
    return [tile_work(store_dir, {**task, "tile": i}) for i in indices]


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
    #: set from the command line (``--lithops-calls``, ``--lithops-version``)
    calls = WORKERS
    version = 1

    def __init__(self, store_dir: str) -> None:
        super().__init__(store_dir)
        import lithops

        # Documented keys only (docs/source/compute_config/localhost.md): localhost compute and
        # storage, this interpreter as the runtime, one worker process per core, and the runner version.
        # Entered as a context manager (as Lithops documents it), so that close() ends it with its
        # __exit__, which kills calls still running: get_result() leaves them running when it is
        # interrupted, so a run stopped at --timeout would go on rendering otherwise.
        self.stack = contextlib.ExitStack()
        self.executor = self.stack.enter_context(lithops.LocalhostExecutor(
            config={"lithops": {"backend": "localhost", "storage": "localhost", "log_level": "WARNING"},
                    "localhost": {"runtime": sys.executable, "worker_processes": WORKERS,
                                  "version": self.version}}))

    def map_tiles(self, args: list[dict]) -> list[int]:
        # include_modules=None: workers import fractally from this environment (as ours do), so
        # numba finds its cached kernel; the default would ship the package's source with each job.
        if self.calls <= 0:  # one call per tile, like the other peers
            self.executor.map(tile_work, [(self.store_dir, a) for a in args], include_modules=None)
            return self.executor.get_result()
        # Tile indices, not tasks: every call gets the job's task once and its share of the indices,
        # dealt round-robin so that the expensive tiles spread over the calls.
        base = {k: v for k, v in args[0].items() if k != "tile"}
        indices = [a["tile"] for a in args]
        n = min(self.calls, len(indices))
        self.executor.map(tile_batch, [(self.store_dir, base, indices[i::n]) for i in range(n)],
                          include_modules=None)
        return [tile for batch in self.executor.get_result() for tile in batch]

    def close(self) -> None:
        try:
            self.stack.close()
        finally:
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


class RunTimeout(Exception):
    """A run that went past ``--timeout``, raised from SIGALRM in the waiting driver; the caller then
    closes that system (for Lithops, the executor's ``__exit__`` kills the calls still running)."""


def timed_run(system: Any, spec: dict, timeout: float) -> float:
    def expire(signum: int, frame: Any) -> None:
        raise RunTimeout(f"{system.name}: not done after {timeout:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return system.run(spec)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def plot(runs: dict[str, dict[str, list[float]]], timed_out: dict[str, dict[str, float]], path: str) -> None:
    fig, axes = plot_axes(len(runs), width=4.2)
    for ax, (job, by) in zip(axes, runs.items()):
        systems = list(dict.fromkeys([*by, *timed_out.get(job, {})]))
        values = [median(by[s]) if by.get(s) else float("nan") for s in systems]
        missing = [f"stopped after\n{timed_out[job][s]:.0f} s" if s in timed_out.get(job, {}) else "n/a"
                   for s in systems]
        labels = [f"lithops\n(v{Lithops.version}, " + (f"{Lithops.calls} calls)" if Lithops.calls > 0 else
                                                      "a call per tile)") if s == "lithops" else s for s in systems]
        bar_panel(ax, labels, values, ours=lambda label: label == "fractally", runs=[by.get(s, []) for s in systems],
                  missing=missing,
                  title=f"{job}: {JOBS[job]['width']}x{JOBS[job]['height']}, tile {JOBS[job].get('tile_size', 256)}",
                  ylabel="wall seconds, submit to result (lower is better)")
    rounds = max((len(v) for by in runs.values() for v in by.values()), default=0)
    save_plot(fig, path, f"Same tiles, same kernel, same assembly; {WORKERS} workers; median of {rounds} rounds "
                         "(dots: every run)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    ap.add_argument("--peers", nargs="+", default=["dask", "lithops", "ray"], choices=["dask", "lithops", "ray"])
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds a run may take; past it the run is stopped and that system dropped (default 600)")
    ap.add_argument("--lithops-calls", type=int, default=Lithops.calls,
                    help=f"Lithops calls a job's tiles are dealt to (default {Lithops.calls}); 0: one call per tile")
    ap.add_argument("--lithops-version", type=int, default=Lithops.version, choices=[1, 2],
                    help=f"Lithops' localhost backend version (default {Lithops.version}; Lithops' own default is 2)")
    ap.add_argument("--json", help="write every run's time to this file")
    ap.add_argument("--plot", help="draw the medians (and every run) into this PNG")
    args = ap.parse_args()
    Lithops.calls, Lithops.version = args.lithops_calls, args.lithops_version
    kinds = {"dask": Dask, "lithops": Lithops, "ray": Ray}
    runs: dict[str, dict[str, list[float]]] = {job: {} for job in args.jobs}
    timed_out: dict[str, dict[str, float]] = {job: {} for job in args.jobs}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="fractally-peers-"))
        ours = os.path.join(tmp, "fractally")
        base = stack.enter_context(embedded_service(ours))
        systems: list[Any] = [start(lambda: Ours(base, ours), "fractally")]
        for name in args.peers:
            systems.append(start(lambda: kinds[name](os.path.join(tmp, name)), name))
        systems = [s for s in systems if s is not None]
        closed: set[str] = set()

        def close(system: Any) -> None:
            if system.name not in closed:
                closed.add(system.name)
                system.close()

        for system in systems:
            stack.callback(close, system)
        for r in range(args.rounds):
            for job in args.jobs:
                spec = shifted(JOBS[job], r + 1)
                order = systems[r % len(systems):] + systems[:r % len(systems)]
                line = []
                for system in order:
                    try:
                        runs[job].setdefault(system.name, []).append(timed_run(system, spec, args.timeout))
                        line.append(f"{system.name} {runs[job][system.name][-1]:.2f} s")
                    except RunTimeout as err:
                        print(f"  {err}: stopped; {system.name} is left out of the remaining runs", flush=True)
                        timed_out[job][system.name] = args.timeout
                        line.append(f"{system.name} > {args.timeout:.0f} s")
                        systems.remove(system)
                        close(system)
                print(f"round {r + 1}, {job}: " + ", ".join(line), flush=True)
    medians = {job: {name: median(v) for name, v in by.items() if v} for job, by in runs.items()}
    lithops_how = (f"; lithops: localhost v{args.lithops_version}, "
                   + (f"tiles dealt to {args.lithops_calls} calls" if args.lithops_calls > 0 else "one call per tile")
                   if "lithops" in args.peers else "")
    print(f"\nwall seconds, submit -> result; median of {args.rounds} rounds; {WORKERS} workers each{lithops_how}")
    for job, by in medians.items():
        peers = {k: v for k, v in by.items() if k != "fractally"}
        print(f"{job} ({JOBS[job]['width']}x{JOBS[job]['height']}, tile {JOBS[job].get('tile_size', 256)}):")
        for name, value in by.items():
            ratio = ("" if name == "fractally" or "fractally" not in by
                     else f"   fractally / {name}: {by['fractally'] / value:.3g}x")
            print(f"  {name:10} {value:7.2f} s   runs: {', '.join(f'{x:.2f}' for x in runs[job][name])}{ratio}")
        for name, limit in timed_out[job].items():
            print(f"  {name:10} > {limit:.0f} s (stopped; runs before: "
                  f"{', '.join(f'{x:.2f}' for x in runs[job].get(name, [])) or 'none'})")
        if peers and "fractally" in by:
            best = min(peers, key=peers.get)
            print(f"  fractally / best peer ({best}): {by['fractally'] / peers[best]:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "medians": medians, "timed_out": timed_out, "workers": WORKERS, "jobs": JOBS,
                       "lithops": {"version": args.lithops_version, "calls": args.lithops_calls}}, f, indent=1)
    if args.plot:
        plot(runs, timed_out, args.plot)


if __name__ == "__main__":
    main()
