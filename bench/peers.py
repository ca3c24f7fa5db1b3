"""Peers: our stack against dask.distributed, Lithops and Ray running the same tiles with the same
kernel and the same assembly, each peer both ways: with our pipeline, and with its native one.

Every system renders a job's tiles with ``fractally.jobs.tasks`` (``compute_tile``: the same numba kernel
and ``encode_tile``; ``store_tile``: a put into a local-folder store) and composes the result with
``fractally.jobs.tasks.assemble`` (the same band-by-band PNG writer), two workers (one per core):

* **fractally**: the embedded service (``fractally serve``), HTTP submit -> its result object is in
  the store (``common.run_job_in``). One task per tile on its thread pool; its assembler starts with
  the job and takes each band as soon as its tiles are in, with the tiles' arrays handed over in
  memory (``fractally.jobs.invoke.InProcessInvoker``), so colouring and compressing overlap rendering;
* **dask**: ``distributed.LocalCluster`` (2 worker processes, 1 thread each);
* **ray**: ``ray.init(num_cpus=2)``;
* **lithops**: ``LocalhostExecutor`` (localhost compute and storage, ``version: 1`` runner with 2
  forked worker processes, see below).

Each peer runs in up to four variants, the two choices crossed (``--pipelines``, ``--batching``):

* pipeline **handover** (ours): every task stores its tile and returns its arrays to the driver,
  which runs ``tasks.assemble`` from the start in a thread, fed through the same hand-over object
  our invoker uses (``fractally.jobs.invoke._Pipeline``, with the same 64 MiB budget) as the results come
  in (dask ``as_completed``, ``ray.wait``, Lithops ``wait(ANY_COMPLETED)``); the arrays travel
  from the worker processes to the driver, which ours (threads in one process) need not do;
* pipeline **readback** (the peers' natural way): every task stores its tile; once all are done
  the driver runs ``tasks.assemble``, which reads and decodes every tile back from the store;
* batching **tile**: one task per tile, as ours dispatches them;
* batching **dealt**: the tiles dealt round-robin to ``--calls`` tasks (default: one per worker),
  what Lithops' documentation advises for short tasks. Under hand-over a batch returns its arrays
  when it ends, so with two batches the assembly waits for them.

Lithops runs every call in a process of its own: its default localhost backend (``version: 2``)
starts a fresh interpreter per call, and both versions fork a throwaway ``JobRunner`` per call that
unpickles the function, so ``import fractally`` (numba, numpy, Pillow) is paid again by every call
(about 0.5 s of a worker a call here). One call per tile took 426 s on the big-tile job and was
stopped at 600 s on the tiny-tile one (docs/benchmarks.md), so Lithops runs only dealt unless
``--lithops-per-tile`` is given. It uses the ``version: 1`` runner (``--lithops-version``; version 2,
the default, also hung now and then on an executor's later ``map``).

Two jobs: **big tiles**, the whole Mandelbrot set at 8192x8192, max_iter 1000 (1024 tiles of
256x256, tens of milliseconds each: the kernel and the per-pixel work dominate), and **tiny tiles**,
the Julia set at 800x640 with tile_size 16 (2000 tiles of 16x16: the cost of a task dominates).
All systems are started and warmed up first (clusters started, kernels loaded in every worker;
not timed); then each round runs every system and variant on a fresh picture (the centre moves by a
fraction of a pixel, so no tile is reused), in a rotating order. Figures are medians of the rounds;
a system that cannot be imported or started here is skipped with the reason.

A run that takes longer than ``--timeout`` seconds (default 600) is stopped, reported as such, and
that peer (all its variants) is left out of the remaining runs, so the script always ends by itself.

    .venv/bin/python bench/peers.py [--rounds 3] [--peers dask ray lithops] [--pipelines handover readback]
                                    [--batching tile dealt] [--calls N] [--json out.json]
                                    [--plot docs/peers.png] [--timeout 600] [--lithops-per-tile]
    .venv/bin/python bench/peers.py --replot out.json --plot docs/peers.png   # redraw from a --json file

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
import threading
import time
import traceback
from typing import Any, Callable, Iterator

from common import bar_panel, embedded_service, median, plot_axes, run_job_in, save_plot

from fractally import jobs
from fractally.jobs import tasks
from fractally.jobs.invoke import InProcessInvoker, _Pipeline
from fractally.picture.spec import parse_spec
from fractally.store import open_store

WORKERS = os.cpu_count() or 1
PIPELINES = ("handover", "readback")
BATCHINGS = ("tile", "dealt")

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


def _store(store_dir: str) -> Any:
    return _stores.get(store_dir) or _stores.setdefault(store_dir, open_store(store_dir))


def tile_work(store_dir: str, task: dict, handover: bool) -> Any:
    """One tile, in a peer's worker process: what ours does for a tile (compute, encode, store).
    ``handover``: return (index, counts, smooth) for the driver's assembler; else the index."""
    store = _store(store_dir)
    rendered = tasks.compute_tile(task, store)
    if not isinstance(rendered, tasks.RenderedTile):  # stored already (not in these runs: fresh pictures)
        return (task["tile"], None, None) if handover else task["tile"]
    tasks.store_tile(rendered, store)
    return (task["tile"], rendered.counts, rendered.smooth) if handover else task["tile"]


def tile_batch(store_dir: str, task: dict, indices: list[int], handover: bool) -> list[Any]:
    """Several tiles in one task: the job's task with each tile index in turn."""
    return [tile_work(store_dir, {**task, "tile": i}, handover) for i in indices]


class Peer:
    """A framework that runs tile tasks; the driver (this process) assembles."""

    name = "peer"
    calls = WORKERS  # tasks a job's tiles are dealt to under batching "dealt" (--calls)

    def __init__(self, store_dir: str) -> None:
        self.store_dir = store_dir
        self.store = open_store(store_dir)

    def submit(self, fn: Callable, arglists: list[tuple]) -> Any:
        """Start ``fn(*args)`` for each of ``arglists``; a handle for ``completed``/``results``."""
        raise NotImplementedError

    def completed(self, handle: Any) -> Iterator[Any]:
        """The results, each as soon as its task ends (any order). Empties ``handle`` (a list), so that
        a result the driver has taken is no longer referenced and the framework can free it."""
        raise NotImplementedError

    def run(self, spec: dict, pipeline: str = "handover", batching: str = "tile", store_dir: str | None = None
            ) -> float:
        """One job: ``store_dir`` is the variant's own store (variants of a peer run the same picture in a
        round, so a shared store would hand the later ones the first one's tiles and result)."""
        store_dir = store_dir or self.store_dir
        store = _store(store_dir)
        t0 = time.perf_counter()
        job, _ = jobs.create(store, parse_spec(spec))
        base = {k: v for k, v in job.tile_task(0).items() if k != "tile"}
        indices = list(range(job.tiles_total))
        handover = pipeline == "handover"
        if batching == "tile":
            handle = self.submit(tile_work, [(store_dir, {**base, "tile": i}, handover) for i in indices])
            one = True
        else:
            n = min(self.calls, len(indices))
            handle = self.submit(tile_batch, [(store_dir, base, indices[i::n], handover) for i in range(n)])
            one = False
        results: list[Any] = []
        if handover:  # our invoker's pipeline: assemble from the start, tiles handed over as they come
            feed = _Pipeline(indices, InProcessInvoker.HANDOFF_BYTES)
            assembler = threading.Thread(target=lambda: results.append(tasks.assemble(job.id, store,
                                                                                      ready=feed.wait)))
            assembler.start()
            done = 0
            try:
                for result in self.completed(handle):
                    for index, counts, smooth in ([result] if one else result):
                        feed.tile_ended(index, None if counts is None else (counts, smooth), True)
                        done += 1
            finally:
                if done != job.tiles_total:
                    feed.tile_ended(-1, None, False)  # the assembler gives up (TileFailed)
                feed.end(tiles=True)
                assembler.join()
        else:
            done = sum(1 if one else len(r) for r in self.completed(handle))
            results.append(tasks.assemble(job.id, store))
        if done != job.tiles_total:
            raise RuntimeError(f"{self.name}: {done} of {job.tiles_total} tiles")
        if results[0]["status"] != "done" or results[0].get("written") is False:  # not done, or done before
            raise RuntimeError(f"{self.name}: assemble answered {results[0]}")
        return time.perf_counter() - t0

    def close(self) -> None:
        pass


class Dask(Peer):
    name = "dask"

    def __init__(self, store_dir: str) -> None:
        super().__init__(store_dir)
        from dask.distributed import Client, LocalCluster, as_completed

        self.cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                    dashboard_address=":0", silence_logs=logging.ERROR)
        self.client = Client(self.cluster)
        self.as_completed = as_completed

    def submit(self, fn: Callable, arglists: list[tuple]) -> Any:
        return self.client.map(fn, *zip(*arglists), pure=False)

    def completed(self, handle: Any) -> Iterator[Any]:
        pending = self.as_completed(handle)
        handle.clear()
        for future in pending:
            yield future.result()

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


class Lithops(Peer):
    name = "lithops"
    #: set from the command line (``--lithops-version``)
    version = 1

    def __init__(self, store_dir: str) -> None:
        super().__init__(store_dir)
        import lithops
        from lithops.wait import ANY_COMPLETED

        self.any_completed = ANY_COMPLETED
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

    def submit(self, fn: Callable, arglists: list[tuple]) -> Any:
        # include_modules=None: workers import fractally from this environment (as ours do), so
        # numba finds its cached kernel; the default would ship the package's source with each job.
        return self.executor.map(fn, arglists, include_modules=None)

    def completed(self, handle: Any) -> Iterator[Any]:
        pending = list(handle)
        handle.clear()
        while pending:
            done, pending = self.executor.wait(pending, return_when=self.any_completed,
                                               show_progressbar=False)
            yield from self.executor.get_result(done, show_progressbar=False)
            pending = list(pending)

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
        ray.init(num_cpus=WORKERS, include_dashboard=False, object_store_memory=512 * 2**20,
                 log_to_driver=False, logging_level="ERROR")
        self.remotes: dict[Callable, Any] = {}

    def submit(self, fn: Callable, arglists: list[tuple]) -> Any:
        remote = self.remotes.get(fn) or self.remotes.setdefault(fn, self.ray.remote(fn))
        return [remote.remote(*args) for args in arglists]

    def completed(self, handle: Any) -> Iterator[Any]:
        pending = list(handle)
        handle.clear()
        while pending:
            ready, pending = self.ray.wait(pending, num_returns=1)
            if pending:  # and whatever else is done by now
                more, pending = self.ray.wait(pending, num_returns=len(pending), timeout=0)
                ready += more
            yield from self.ray.get(ready)

    def close(self) -> None:
        self.ray.shutdown()


class Variant:
    """One way of running a peer: its pipeline and batching."""

    def __init__(self, peer: Peer, pipeline: str, batching: str) -> None:
        self.peer, self.pipeline, self.batching = peer, pipeline, batching
        self.name = f"{peer.name} {batching} {pipeline}"
        self.store_dir = f"{peer.store_dir}-{batching}-{pipeline}"

    def run(self, spec: dict) -> float:
        return self.peer.run(spec, self.pipeline, self.batching, self.store_dir)


class Ours:
    """The embedded service: submit over HTTP -> the result object is in its store."""

    name = "fractally"
    pipeline, batching = "handover", "tile"

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


def short(name: str) -> str:
    """A plot label: 'dask tile handover' -> 'dask\ntile, hand-over'."""
    if name == "fractally":
        return "fractally\ntile\nhand-over"
    peer, batching, pipeline = name.split()
    return f"{peer}\n{batching}\n{'hand-over' if pipeline == 'handover' else 'read-back'}"


def plot(runs: dict[str, dict[str, list[float]]], timed_out: dict[str, dict[str, float]], path: str,
         calls: int) -> None:
    fig, axes = plot_axes(len(runs), width=6.4, height=4.4)
    for ax, (job, by) in zip(axes, runs.items()):
        systems = list(dict.fromkeys([*by, *timed_out.get(job, {})]))
        values = [median(by[s]) if by.get(s) else float("nan") for s in systems]
        missing = [f"stopped after\n{timed_out[job][s]:.0f} s" if s in timed_out.get(job, {}) else "n/a"
                   for s in systems]
        bar_panel(ax, [short(s) for s in systems], values, ours=lambda label: label.startswith("fractally"),
                  runs=[by.get(s, []) for s in systems], missing=missing,
                  title=f"{job}: {JOBS[job]['width']}x{JOBS[job]['height']}, tile {JOBS[job].get('tile_size', 256)}",
                  ylabel="wall seconds, submit to result (log scale; lower is better)")
        ax.set_yscale("log")
        ax.tick_params(axis="x", labelsize=6)
    rounds = max((len(v) for by in runs.values() for v in by.values()), default=0)
    save_plot(fig, path, f"Same tiles, same kernel, same assembly code; {WORKERS} workers; median of {rounds} rounds "
                         f"(dots: every run). tile: one task per tile; dealt: tiles dealt to {calls} tasks. "
                         "hand-over: arrays to the driver's assembler as tiles finish (ours); read-back: assemble "
                         "after all tiles, reading them from the store")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    ap.add_argument("--peers", nargs="+", default=["dask", "lithops", "ray"], choices=["dask", "lithops", "ray"])
    ap.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=PIPELINES)
    ap.add_argument("--batching", nargs="+", default=list(BATCHINGS), choices=BATCHINGS)
    ap.add_argument("--calls", type=int, default=WORKERS,
                    help=f"tasks a job's tiles are dealt to under --batching dealt (default {WORKERS})")
    ap.add_argument("--lithops-per-tile", action="store_true",
                    help="also run Lithops with one call per tile (minutes a round)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds a run may take; past it the run is stopped and that peer dropped (default 600)")
    ap.add_argument("--lithops-version", type=int, default=Lithops.version, choices=[1, 2],
                    help=f"Lithops' localhost backend version (default {Lithops.version}; Lithops' own default is 2)")
    ap.add_argument("--json", help="write every run's time to this file")
    ap.add_argument("--plot", help="draw the medians (and every run) into this PNG")
    ap.add_argument("--replot", metavar="JSON", help="only draw --plot from a --json file of an earlier run")
    args = ap.parse_args()
    if args.replot:
        with open(args.replot) as f:
            saved = json.load(f)
        plot(saved["runs"], saved["timed_out"], args.plot, saved["calls"])
        return
    Peer.calls, Lithops.version = max(1, args.calls), args.lithops_version
    kinds = {"dask": Dask, "lithops": Lithops, "ray": Ray}
    runs: dict[str, dict[str, list[float]]] = {job: {} for job in args.jobs}
    timed_out: dict[str, dict[str, float]] = {job: {} for job in args.jobs}
    load = [os.getloadavg()[0]]
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="fractally-peers-"))
        ours = os.path.join(tmp, "fractally")
        base = stack.enter_context(embedded_service(ours))
        systems: list[Any] = []
        first = start(lambda: Ours(base, ours), "fractally")
        if first is not None:
            systems.append(first)
        peers: list[Peer] = []
        for name in args.peers:
            peer = start(lambda: kinds[name](os.path.join(tmp, name)), name)
            if peer is None:
                continue
            peers.append(peer)
            for batching in args.batching:
                if name == "lithops" and batching == "tile" and not args.lithops_per_tile:
                    continue
                for pipeline in args.pipelines:
                    systems.append(Variant(peer, pipeline, batching))
        closed: set[str] = set()

        def close(peer: Any) -> None:
            if peer.name not in closed:
                closed.add(peer.name)
                peer.close()

        for peer in peers:
            stack.callback(close, peer)
        for k, system in enumerate(systems):  # every variant's code path once, on a picture of its own
            if isinstance(system, Variant):
                system.run(shifted(WARM, 100 + k))
        for r in range(args.rounds):
            for job in args.jobs:
                spec = shifted(JOBS[job], r + 1)
                order = systems[r % len(systems):] + systems[:r % len(systems)]
                line = []
                for system in order:
                    if system not in systems:  # dropped in this round (its peer timed out)
                        continue
                    try:
                        runs[job].setdefault(system.name, []).append(timed_run(system, spec, args.timeout))
                        line.append(f"{system.name} {runs[job][system.name][-1]:.2f} s")
                    except RunTimeout as err:
                        peer = getattr(system, "peer", system)
                        print(f"  {err}: stopped; {peer.name} is left out of the remaining runs", flush=True)
                        timed_out[job][system.name] = args.timeout
                        line.append(f"{system.name} > {args.timeout:.0f} s")
                        systems[:] = [s for s in systems if getattr(s, "peer", s) is not peer]
                        close(peer)
                print(f"round {r + 1}, {job}: " + ", ".join(line), flush=True)
                load.append(os.getloadavg()[0])
    medians = {job: {name: median(v) for name, v in by.items() if v} for job, by in runs.items()}
    print(f"\nwall seconds, submit -> result; median of {args.rounds} rounds; {WORKERS} workers each; "
          f"dealt: tiles dealt round-robin to {Peer.calls} tasks; lithops: localhost v{args.lithops_version}; "
          f"load average {min(load):.1f}-{max(load):.1f} during the rounds")
    for job, by in medians.items():
        print(f"{job} ({JOBS[job]['width']}x{JOBS[job]['height']}, tile {JOBS[job].get('tile_size', 256)}):")
        for name, value in by.items():
            ratio = ("" if name == "fractally" or "fractally" not in by
                     else f"   fractally / this: {by['fractally'] / value:.3g}x")
            print(f"  {name:26} {value:7.2f} s   runs: {', '.join(f'{x:.2f}' for x in runs[job][name])}{ratio}")
        for name, limit in timed_out[job].items():
            print(f"  {name:26} > {limit:.0f} s (stopped; runs before: "
                  f"{', '.join(f'{x:.2f}' for x in runs[job].get(name, [])) or 'none'})")
        if "fractally" in by:
            for pipeline in args.pipelines:
                peers_here = {k: v for k, v in by.items() if k.endswith(" " + pipeline)}
                if peers_here:
                    best = min(peers_here, key=peers_here.get)
                    print(f"  fractally / best peer with pipeline {pipeline} ({best}): "
                          f"{by['fractally'] / peers_here[best]:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "medians": medians, "timed_out": timed_out, "workers": WORKERS, "jobs": JOBS,
                       "calls": Peer.calls, "lithops_version": args.lithops_version, "load": load}, f, indent=1)
    if args.plot:
        plot(runs, timed_out, args.plot, Peer.calls)


if __name__ == "__main__":
    main()
