"""How the api reaches render_tile and assemble: in-process, over HTTP, or (see queue.py) NATS.

Every invoker fans out a job's missing tiles, counts them back, and when the
last one has landed triggers assemble (the in-process invoker starts it with the
tiles and feeds it band by band) — once per job per invoker; concurrent
or repeated completions still give one result because assemble claims the job
and writes with put-if-absent. The handlers never know which invoker called.

The fan-out of the in-process and HTTP invokers lives in this process's threads, so the replica that
dispatches a job holds its dispatch lease (``jobs/<id>/dispatch.lease``, ``fractally.jobs.lease``), renews
it while the job is in its hands and releases it when the job leaves them, or when the invoker is
closed (SIGTERM); any replica that answers a status poll for an unfinished job whose lease is not live
carries it on (``Service.status``). The queue invoker's tasks live in JetStream: it is ``durable`` and
takes no lease.
"""

from __future__ import annotations

import abc
import itertools
import logging
import os
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fractally import jobs
from fractally.jobs import lease, tasks
from fractally.config import Settings
from fractally.picture.spec import RenderSpec
from fractally.store import ObjectStore
from fractally.picture.tiling import grid

log = logging.getLogger("fractally.jobs.invoke")


@dataclass
class _Tracker:
    remaining: int
    job: jobs.Job | None = None
    present: int = 0  # tiles already in the store when the job was dispatched
    stored: int = 0  # tiles this invoker has seen stored since
    failures: list[str] = field(default_factory=list)
    failed: int = 0  # tiles in the failed calls
    #: Tiles still out per tile row sent in parts (``plan_batches``): at 0 the row's piece is made
    #: by an assemble call of its own (``_send_band``). A row whose part failed gets none.
    band_left: dict[int, int] = field(default_factory=dict)
    bands_pending: int = 0  # such calls in flight; the final assembly waits for them
    settled: bool = False  # every tile and row call has ended and the job went on (once)


#: Seconds a dispatch lease lives unrenewed (``FRACTALLY_LEASE_TIMEOUT``, ``Settings.lease_timeout``).
LEASE_TIMEOUT = 30.0


class Invoker(abc.ABC):
    """Fan-out and completion bookkeeping; subclasses only say how a call travels."""

    #: True if the job's calls outlive this process (the queue): no dispatch lease is taken, and no
    #: other replica carries a job on (``Service.status``).
    durable = False

    def __init__(self, store: ObjectStore, lease_timeout: float = LEASE_TIMEOUT) -> None:
        self.store = store
        self.lease_timeout = lease_timeout
        self._holder = lease.new_holder()  # this invoker, in its dispatch leases
        self._renewal = lease.Renewal(store, lease.renewal_interval(lease_timeout), name="dispatch-lease-renewal")
        self._closed = False
        self._active: dict[str, _Tracker] = {}
        self._lock = threading.Lock()
        self._last_left = threading.Condition(self._lock)  # notified when no job is left in our hands
        self._idle_since = float("-inf")  # time.monotonic() when the last job left
        #: Jobs this invoker has started (``dispatch`` calls that were not a no-op): how a caller, or a
        #: test, sees whether a submit set work going without waiting to see if any lands.
        self.dispatched = 0

    def is_active(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._active

    def wait_until_idle(self, timeout: float, quiet: float = 0.0) -> bool:
        """Block until this invoker has run no job for ``quiet`` seconds, at most ``timeout`` seconds;
        True if it has.

        For background work that should not compete with a job: the embedded server loads the
        kernels a job does not need yet only between jobs (``functions/api/server.py``).
        """
        deadline = time.monotonic() + timeout
        with self._last_left:
            while True:
                now = time.monotonic()
                if not self._active and now >= self._idle_since + quiet:
                    return True
                if now >= deadline:
                    return False
                # Busy: until the last job leaves. Idle, not for long enough: until it has been (a job
                # starting meanwhile is seen when we wake).
                self._last_left.wait((deadline if self._active else min(deadline, self._idle_since + quiet)) - now)

    def progress(self, job_id: str) -> tuple[jobs.Job, int] | None:
        """The job and how many of its tiles are stored, if this invoker runs it (else None):
        a status poll answered from memory instead of listing the store."""
        with self._lock:
            tracker = self._active.get(job_id)
            if tracker is None or tracker.job is None:
                return None
            return tracker.job, tracker.present + tracker.stored

    def dispatch(self, job: jobs.Job, indices: list[int]) -> bool:
        """Send ``indices`` of ``job`` to render_tile; False (nothing sent) if this invoker already runs the
        job, another replica holds its live dispatch lease, or this invoker is closed."""
        with self._lock:
            if job.id in self._active or self._closed:
                return False
            self._active[job.id] = _Tracker(remaining=len(indices), job=job, present=job.tiles_total - len(indices))
        if not self.durable:
            try:
                taken = lease.take(self.store, jobs.dispatch_key(job.id), self._holder, self.lease_timeout)
            except BaseException:
                self._leave(job.id)
                raise
            if not taken:
                self._leave(job.id)
                return False
            self._renewal.add(jobs.dispatch_key(job.id), self._holder)
        with self._lock:
            self.dispatched += 1
        self._started(job, indices)
        if not indices:
            self._send_assemble(job.id)
        else:
            self._send_tiles(job, indices)
        return True

    def _send_tiles(self, job: jobs.Job, indices: list[int]) -> None:
        """Send the tiles in batches (``plan_batches``), one call each. Rows sent in parts are encoded
        by an assemble call each once their parts are in (``bands_assembled``), so no one process
        encodes them all at the end."""
        runs = plan_batches(job.spec, indices, self.batch_target())
        if self.bands_assembled:
            with self._lock:
                tracker = self._active[job.id]
                for row, parts in row_parts(job.spec, runs).items():
                    tracker.band_left[row] = sum(end - first for first, end in parts)
        for first, end in runs:
            self._send_batch(job, first, end)

    #: True if this invoker has assemble make the pieces of rows sent in parts (``_send_band``).
    bands_assembled = False

    def batch_target(self) -> int:
        """How many calls a job is cut into (``Settings.batches``)."""
        return 1

    def _tiles_done(self, job: jobs.Job, first: int, end: int, error: str | None) -> None:
        """Tiles ``first`` to ``end - 1`` have ended, stored or with ``error``."""
        band = None
        with self._lock:
            tracker = self._active[job.id]
            tracker.remaining -= end - first
            if error is not None:
                what = f"tile {first}" if end == first + 1 else f"tiles {first}-{end - 1}"
                tracker.failures.append(f"{what}: {error}")
                tracker.failed += end - first
            else:
                tracker.stored += end - first
            if tracker.band_left and job.tiles_total:
                r = first // grid(job.spec)[1]
                if r in tracker.band_left:
                    left = tracker.band_left[r] = -1 if error is not None else tracker.band_left[r] - (end - first)
                    # The job's last tiles: the final assembly starts now and makes the row itself, from
                    # its row parts, sooner than a call of its own would and then a join.
                    if left == 0 and not tracker.failures and tracker.remaining > 0:
                        tracker.bands_pending += 1
                        band = r
        if band is not None:
            self._send_band(job, band)
        self._maybe_finished(job.id)

    def _band_done(self, job: jobs.Job, band: int, error: str | None) -> None:
        """A row's piece is made, or not: then the final assembly encodes the row itself."""
        if error is not None:
            log.warning("job %s: row %d was not encoded on its own (%s); the final assembly will", job.id, band, error)
        with self._lock:
            self._active[job.id].bands_pending -= 1
        self._maybe_finished(job.id)

    def _maybe_finished(self, job_id: str) -> None:
        with self._lock:
            tracker = self._active[job_id]
            finished = tracker.remaining == 0 and tracker.bands_pending == 0 and not tracker.settled
            tracker.settled |= finished
            failures, failed = list(tracker.failures), tracker.failed
        if finished:
            self._tiles_finished(job_id, f"{failed} tile(s) could not be rendered ({failures[0]})" if failures else None)

    def _send_band(self, job: jobs.Job, band: int) -> None:
        """Start assemble for one row's piece; call ``_band_done`` when it ends (never block)."""
        raise NotImplementedError

    def _started(self, job: jobs.Job, indices: list[int]) -> None:
        """Hook: the job is registered and its tiles are about to be sent."""

    def _tiles_finished(self, job_id: str, error: str | None) -> None:
        """Every dispatched tile has ended: assemble, or fail the job with ``error``."""
        if error is not None or self._closed:
            self._finish(job_id, error)
        else:
            self._send_assemble(job_id)

    def _finish(self, job_id: str, error: str | None) -> None:
        """The job left this invoker's hands: done, or failed with ``error`` (shown to the user).

        The job is released even if its failure cannot be recorded (the store is down): a
        resubmission must be able to start it again. Once the invoker is closed nothing is recorded:
        its calls were cancelled, not failed, and the replica that carries the job on sees for itself.
        """
        try:
            if self._closed:
                log.info("job %s left to another replica: this one is stopping", job_id)
            elif error is not None:
                log.warning("job %s failed: %s", job_id, error)
                jobs.mark_failed(self.store, job_id, error)
        except Exception:
            log.error("could not record the failure of job %s", job_id, exc_info=True)
        finally:
            self._leave(job_id)
            if not self.durable:
                self._release(job_id)

    def _leave(self, job_id: str) -> None:
        with self._lock:
            self._active.pop(job_id, None)
            if not self._active:
                self._idle_since = time.monotonic()
                self._last_left.notify_all()

    def _release(self, job_id: str) -> None:
        """Give up the job's dispatch lease: stop renewing it, then delete it (unless another replica took
        it over meanwhile). If the store is away, the lease expires after ``lease_timeout``."""
        key = jobs.dispatch_key(job_id)
        self._renewal.discard(key)
        try:
            lease.release(self.store, key, self._holder)
        except Exception:
            log.warning("could not release the dispatch lease of job %s", job_id, exc_info=True)

    def _send_batch(self, job: jobs.Job, first: int, end: int) -> None:
        """Start render_tile for tiles ``first`` to ``end - 1``; call ``_tiles_done`` when it ends (never
        block)."""
        raise NotImplementedError

    @abc.abstractmethod
    def _send_assemble(self, job_id: str) -> None:
        """Start assemble; call ``_finish`` when it ends (never block)."""

    def close(self) -> None:
        """Stop accepting work, cancel the calls not started, and release the dispatch leases of the jobs
        still in this invoker's hands, so another replica carries them on at its next status poll; running
        calls finish (and record nothing: ``_finish``). Closing twice is closing once."""
        with self._lock:
            self._closed = True  # first: the calls cancelled next end their jobs as "left", not "failed"
        self._stop_calls()
        for key in self._renewal.stop():
            try:
                lease.release(self.store, key, self._holder)
            except Exception:
                log.warning("could not release the dispatch lease %s", key, exc_info=True)

    def _stop_calls(self) -> None:
        """Hook for ``close``: cancel the calls not started yet."""


class TileFailed(RuntimeError):
    """A tile of a pipelined assembly will not come (it failed or was cancelled)."""


class _Pipeline:
    """What a job's pipelined assembler waits on: which dispatched tiles are not stored yet, and
    the arrays of tiles rendered here, held (up to ``budget`` bytes) until the assembler takes
    them so it need not read them back. Also settles the job once both halves have ended."""

    def __init__(self, indices: list[int], budget: int) -> None:
        self.cond = threading.Condition()
        self.pending = set(indices)
        self.arrays: dict[int, tasks.Part] = {}
        self.held = 0
        self.budget = budget
        self.failed = False
        self.tiles_over = self.assembly_over = self.settled = False
        self.tiles_error: str | None = None
        self.assembly_error: str | None = None
        self.awaited: int | None = None  # the tile the assembler is blocked on

    def tile_ended(self, index: int, part: tasks.Part | None, ok: bool) -> None:
        with self.cond:
            self.pending.discard(index)
            self.failed |= not ok
            if part is not None and ok and not self.assembly_over:
                size = part[0].nbytes + part[1].nbytes
                if self.held + size <= self.budget:
                    self.arrays[index] = part
                    self.held += size
            if index == self.awaited or not ok:  # waking the assembler for another tile only costs a GIL handoff
                self.cond.notify_all()

    def wait(self, index: int) -> tasks.Part | None:
        """``tasks.assemble``'s ``ready``: block until tile ``index`` is stored; its arrays if held."""
        with self.cond:
            self.awaited = index
            while index in self.pending and not self.failed:
                self.cond.wait()
            self.awaited = None
            if self.failed:
                raise TileFailed("a tile of this job could not be rendered")
            part = self.arrays.pop(index, None)
            if part is not None:
                self.held -= part[0].nbytes + part[1].nbytes
            return part

    def end(self, *, tiles: bool = False, assembly: bool = False,
            error: str | None = None) -> tuple[bool, str | None]:
        """Record that the tiles or the assembly ended: (both have, just now; the job's error)."""
        with self.cond:
            if tiles:
                self.tiles_over, self.tiles_error = True, error
                self.failed |= error is not None
                self.cond.notify_all()
            if assembly:
                self.assembly_over, self.assembly_error = True, error
                self.arrays.clear()
            if not (self.tiles_over and self.assembly_over) or self.settled:
                return False, None
            self.settled = True
            return True, self.tiles_error or self.assembly_error


class InProcessInvoker(Invoker):
    """The embedded default: thread pools in this process (numba releases the GIL).

    ``workers`` threads each render a tile and store it, as render_tile does. (Separate writer
    threads cost more than they saved: writing a tile is CPU work -- copying it into the page
    cache -- not waiting for a disk, and with two SCHED_IDLE threads a core instead of one, a
    request thread waited for the GIL behind whichever of them the core ran next; status-poll
    p99 in docs/benchmarks.md, "Responsiveness".) A job's assembly starts with its tiles and
    takes each band as soon as its tiles are stored (``tasks.assemble(ready=...)``), with the
    arrays of the tiles rendered here handed over in memory: colouring and compressing overlap
    rendering, and nothing is read back.
    """

    #: Bytes of tile arrays a job may hold for its assembler; beyond that it reads them back.
    HANDOFF_BYTES = 64 * 2**20
    #: Nice value of the assembler thread and of the colour and deflate threads it starts (threads
    #: inherit their creator's scheduling): below the request threads, so a status poll is not kept
    #: waiting for a core by the PNG encoding, above the renderers, so a band is encoded as soon as its
    #: tiles are in (measured in docs/benchmarks.md, "Responsiveness"). Linux nice values are per thread.
    HELPER_NICE = 10
    #: The render threads run under Linux's ``SCHED_IDLE`` policy (nice 19 where that
    #: is not available): every other thread that wakes up -- a request's, the assembler's, another
    #: process's -- takes their core at once instead of waiting out their time slice, so rendering
    #: uses only the CPU that nothing else wants and a status poll never queues behind it. Switching to
    #: ``SCHED_IDLE`` needs no privileges (only switching back does).
    WORK_IDLE = True

    def __init__(self, store: ObjectStore, workers: int, lease_timeout: float = LEASE_TIMEOUT) -> None:
        super().__init__(store, lease_timeout)
        workers = max(1, workers)
        self.tile_pool = ThreadPoolExecutor(workers, thread_name_prefix="render_tile", initializer=self._idle_priority)
        self.assemble_pool = ThreadPoolExecutor(1, thread_name_prefix="assemble", initializer=self._lower_priority)
        self._pipelines: dict[str, _Pipeline] = {}
        # A thread inherits its scheduling from the thread that starts it, and a pool starts its threads
        # on demand, from whichever thread submits (the last tile's renderer submits a plain assembly).
        # Start every thread now, from this one, so each gets its own.
        for pool, count in ((self.tile_pool, workers), (self.assemble_pool, 1)):
            _start_threads(pool, count)

    @classmethod
    def _lower_priority(cls) -> None:
        """Run in each helper thread as it starts: nice ``HELPER_NICE``."""
        raise_thread_nice(cls.HELPER_NICE)

    @classmethod
    def _idle_priority(cls) -> None:
        """Run in each render thread as it starts: ``SCHED_IDLE`` (``WORK_IDLE``), else nice 19."""
        thread = threading.get_native_id()
        if cls.WORK_IDLE:
            try:
                os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
                return
            except (AttributeError, OSError) as err:  # not Linux, or a sandbox that forbids it
                log.debug("cannot put the render threads under SCHED_IDLE: %r", err)
        raise_thread_nice(19)

    def _started(self, job: jobs.Job, indices: list[int]) -> None:
        if not indices:
            return  # every tile is stored: the plain assembly starts at once
        pipeline = _Pipeline(indices, self.HANDOFF_BYTES)
        with self._lock:
            self._pipelines[job.id] = pipeline
        try:
            future = self.assemble_pool.submit(tasks.assemble, job.id, self.store, ready=pipeline.wait)
        except RuntimeError:  # shut down
            self._settle(job.id, pipeline, assembly=True, error="cancelled")
            return
        future.add_done_callback(lambda f: self._settle(job.id, pipeline, assembly=True, error=_error_of(f)))

    def _send_tiles(self, job: jobs.Job, indices: list[int]) -> None:
        """One task a tile: the threads share this process, so a call costs nothing to batch away, and
        the pipelined assembler takes each tile as it lands."""
        for index in indices:
            self._send_tile(job, index)

    def _send_tile(self, job: jobs.Job, index: int) -> None:
        future = self.tile_pool.submit(self._render_and_store, job, index)
        future.add_done_callback(lambda f: self._tile_settled(job, index, f))

    def _render_and_store(self, job: jobs.Job, index: int) -> tasks.Part | None:
        """On a render thread: the tile's arrays for the assembler, or None if it was stored already."""
        rendered = tasks.compute_tile({"job": job.id, "tile": index}, self.store, job.spec)
        if not isinstance(rendered, tasks.RenderedTile):
            return None
        tasks.store_tile(rendered, self.store)
        return rendered.counts, rendered.smooth

    def _tile_settled(self, job: jobs.Job, index: int, future: Future) -> None:
        error = _error_of(future)
        self._ended(job, index, future.result() if error is None else None, error)

    def _ended(self, job: jobs.Job, index: int, part: tasks.Part | None, error: str | None) -> None:
        with self._lock:
            pipeline = self._pipelines.get(job.id)
        if pipeline is not None:
            pipeline.tile_ended(index, part, error is None)
        self._tiles_done(job, index, index + 1, error)

    def _tiles_finished(self, job_id: str, error: str | None) -> None:
        with self._lock:
            pipeline = self._pipelines.get(job_id)
        if pipeline is None:
            super()._tiles_finished(job_id, error)
        else:
            self._settle(job_id, pipeline, tiles=True, error=error)

    def _settle(self, job_id: str, pipeline: _Pipeline, **ended: Any) -> None:
        """Finish a pipelined job once its tiles and its assembly have both ended."""
        settled, error = pipeline.end(**ended)
        if not settled:
            return
        with self._lock:
            self._pipelines.pop(job_id, None)
        self._finish(job_id, error)

    def _send_assemble(self, job_id: str) -> None:
        future = self.assemble_pool.submit(tasks.assemble, job_id, self.store)
        future.add_done_callback(lambda f: self._finish(job_id, _error_of(f)))

    def _stop_calls(self) -> None:
        self.tile_pool.shutdown(wait=False, cancel_futures=True)
        self.assemble_pool.shutdown(wait=False, cancel_futures=True)


class HttpInvoker(Invoker):
    """POST to function URLs (an OpenFaaS gateway route or a Knative Service URL).

    Bounded concurrency (``http_concurrency`` calls in flight), a timeout per
    call, and retries with exponential backoff and jitter for connection errors,
    timeouts, 429 and 5xx. A 4xx other than 429 is the caller's fault: no retry.
    A function URL setting may list several URLs, comma-separated (replicas with no load balancer in
    front, as in compose.yaml): calls take them in turn, and a retry goes to the next one.
    """

    RETRY_STATUSES = {429, 500, 502, 503, 504}

    def __init__(self, store: ObjectStore, settings: Settings) -> None:
        super().__init__(store, settings.lease_timeout)
        if not settings.render_tile_url or not settings.assemble_url:
            raise ValueError("the HTTP invoker needs FRACTALLY_RENDER_TILE_URL and FRACTALLY_ASSEMBLE_URL")
        import requests  # only this invoker needs it

        self.settings = settings
        self._requests = requests
        self._local = threading.local()
        self._render_tile_urls = _url_list(settings.render_tile_url)
        self._assemble_urls = _url_list(settings.assemble_url)
        self._turns = itertools.count()  # next() is atomic under the GIL
        self.pool = ThreadPoolExecutor(settings.http_concurrency, thread_name_prefix="http-invoke")

    def _session(self):
        if not hasattr(self._local, "session"):
            self._local.session = self._requests.Session()
        return self._local.session

    def call(self, urls: list[str] | str, payload: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """One function call with retries (each attempt waits up to ``timeout``, default ``http_timeout``),
        over ``urls`` in turn; raises RuntimeError with a user-safe message at the end."""
        urls = [urls] if isinstance(urls, str) else urls
        turn = next(self._turns)
        last = "no attempt"
        for attempt in range(self.settings.http_retries + 1):
            if attempt:
                time.sleep(min(10.0, 0.25 * 2 ** attempt) * (0.5 + random.random()))
            url = urls[(turn + attempt) % len(urls)]
            try:
                resp = self._session().post(url, json=payload, timeout=timeout or self.settings.http_timeout)
            except self._requests.RequestException as err:
                last = type(err).__name__
                continue
            if resp.status_code < 300:
                return resp.json()
            last = f"HTTP {resp.status_code}{_said(resp)}"
            if resp.status_code not in self.RETRY_STATUSES:
                break
        raise RuntimeError(f"the function did not answer successfully ({last})")

    def batch_target(self) -> int:
        return self.settings.batches or 2 * self.settings.http_concurrency

    bands_assembled = True

    def _send_batch(self, job: jobs.Job, first: int, end: int) -> None:
        future = self.pool.submit(self.call, self._render_tile_urls, job.batch_task(first, end))
        future.add_done_callback(lambda f: self._tiles_done(job, first, end, _error_of(f)))

    def _send_band(self, job: jobs.Job, band: int) -> None:
        future = self.pool.submit(self.call, self._assemble_urls, {"job": job.id, "bands": [band, band + 1]},
                                  self.settings.assemble_timeout)
        future.add_done_callback(lambda f: self._band_done(job, band, _error_of(f)))

    def _send_assemble(self, job_id: str) -> None:
        future = self.pool.submit(self.call, self._assemble_urls, {"job": job_id},
                                  self.settings.assemble_timeout)  # assembly may take longer than a tile
        future.add_done_callback(lambda f: self._finish(job_id, _error_of(f)))

    def _stop_calls(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def plan_batches(spec: RenderSpec, indices: list[int], target: int) -> list[tuple[int, int]]:
    """Cut ``indices`` (tile indices, any order) into about ``target`` runs ``(first, end)`` of
    consecutive tiles: runs of whole tile rows while there are more rows than runs (so render_tile
    also makes those bands' pieces of the result, ``fractally.jobs.pieces``), else equal parts of a row.
    Cuts fall on fixed positions of the grid, not on where the indices start, so a job sent again
    (only its missing tiles) makes the same runs where it can."""
    if not indices:
        return []
    _, cols = grid(spec)
    per = -(-len(indices) // max(1, target))
    step = -(-per // cols) * cols if per >= cols else per
    runs: list[list[int]] = []
    for index in sorted(indices):
        cut = index % step == 0 if step >= cols else (index % cols) % step == 0
        if runs and runs[-1][1] == index and not cut:
            runs[-1][1] += 1
        else:
            runs.append([index, index + 1])
    return [(first, end) for first, end in runs]


def row_parts(spec: RenderSpec, runs: list[tuple[int, int]]) -> dict[int, list[tuple[int, int]]]:
    """The runs of ``plan_batches`` that hold only part of their first tile row, by that row: the rows no
    render_tile call makes a piece of, so an assemble call (HTTP) or task (queue) of their own makes it
    once their parts are in."""
    _, cols = grid(spec)
    rows: dict[int, list[tuple[int, int]]] = {}
    for first, end in runs:
        if first % cols or end - first < cols:  # runs shorter than a row never span two rows
            rows.setdefault(first // cols, []).append((first, end))
    return rows


def _url_list(setting: str) -> list[str]:
    """A function URL setting: one URL, or several separated by commas."""
    return [url.strip() for url in setting.split(",") if url.strip()]


def raise_thread_nice(value: int) -> None:
    """Raise the calling thread's nice value to ``value`` unless it is higher already (Linux nice values
    are per thread, and raising never needs privileges); elsewhere, or if refused, leave it."""
    try:
        thread = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, thread, max(value, os.getpriority(os.PRIO_PROCESS, thread)))
    except (AttributeError, OSError) as err:  # not Linux, or not allowed: just run at the same priority
        log.debug("cannot lower this thread's priority: %r", err)


def _start_threads(pool: ThreadPoolExecutor, count: int) -> None:
    """Have ``pool`` start ``count`` threads now (each holds a task until all are up)."""
    barrier = threading.Barrier(count + 1, timeout=30)
    for _ in range(count):
        pool.submit(barrier.wait)
    try:
        barrier.wait()
    except threading.BrokenBarrierError:  # a thread did not come up in time: the pool starts it later
        log.warning("the %s threads were slow to start", getattr(pool, "_thread_name_prefix", "pool"))


def _said(resp: Any) -> str:
    """The function's own error message, if it answered in docs/api.md's error shape (written for users)."""
    try:
        message = resp.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return f": {message[:200]}" if isinstance(message, str) else ""


def _error_of(future: Future) -> str | None:
    """A user-safe description of a failed call: the exception's type, never its text or trace."""
    if future.cancelled():
        return "cancelled"
    err = future.exception()
    if err is None:
        result = future.result()
        if isinstance(result, dict) and result.get("status") == "incomplete":
            return f"{result.get('missing')} tile(s) were missing when the image was assembled"
        return None
    log.error("call failed", exc_info=err)
    if isinstance(err, RuntimeError) and str(err).startswith("the function"):
        return str(err)
    message = getattr(err, "message", None)  # FractallyError texts are written for users
    return message if isinstance(message, str) else f"internal error ({type(err).__name__})"


