"""How the api reaches render_tile and assemble: in-process, over HTTP, or (see queue.py) NATS.

Every invoker fans out a job's missing tiles, counts them back, and when the
last one has landed triggers assemble — once per job per invoker; concurrent
or repeated completions still give one result because assemble claims the job
and writes with put-if-absent. The handlers never know which invoker called.
"""

from __future__ import annotations

import abc
import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from fractally import jobs, tasks
from fractally.config import Settings
from fractally.store import ObjectStore

log = logging.getLogger("fractally.invoke")


@dataclass
class _Tracker:
    remaining: int
    failures: list[str] = field(default_factory=list)


class Invoker(abc.ABC):
    """Fan-out and completion bookkeeping; subclasses only say how a call travels."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self._active: dict[str, _Tracker] = {}
        self._lock = threading.Lock()

    def is_active(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._active

    def dispatch(self, job: jobs.Job, indices: list[int]) -> bool:
        """Send ``indices`` of ``job`` to render_tile (no-op if this invoker already runs the job)."""
        with self._lock:
            if job.id in self._active:
                return False
            self._active[job.id] = _Tracker(remaining=len(indices))
        if not indices:
            self._send_assemble(job.id)
        for index in indices:
            self._send_tile(job, index)
        return True

    def _tile_done(self, job: jobs.Job, index: int, error: str | None) -> None:
        with self._lock:
            tracker = self._active[job.id]
            tracker.remaining -= 1
            if error is not None:
                tracker.failures.append(f"tile {index}: {error}")
            finished = tracker.remaining == 0
            failures = list(tracker.failures)
        if not finished:
            return
        if failures:
            self._finish(job.id, f"{len(failures)} tile(s) could not be rendered ({failures[0]})")
        else:
            self._send_assemble(job.id)

    def _finish(self, job_id: str, error: str | None) -> None:
        """The job left this invoker's hands: done, or failed with ``error`` (shown to the user)."""
        if error is not None:
            log.warning("job %s failed: %s", job_id, error)
            jobs.mark_failed(self.store, job_id, error)
        with self._lock:
            self._active.pop(job_id, None)

    @abc.abstractmethod
    def _send_tile(self, job: jobs.Job, index: int) -> None:
        """Start render_tile for one tile; call ``_tile_done`` when it ends (never block)."""

    @abc.abstractmethod
    def _send_assemble(self, job_id: str) -> None:
        """Start assemble; call ``_finish`` when it ends (never block)."""

    def close(self) -> None:
        """Stop accepting work; running calls finish."""


class InProcessInvoker(Invoker):
    """The embedded default: a thread pool in this process (numba releases the GIL)."""

    def __init__(self, store: ObjectStore, workers: int) -> None:
        super().__init__(store)
        self.tile_pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="render_tile")
        self.assemble_pool = ThreadPoolExecutor(1, thread_name_prefix="assemble")

    def _send_tile(self, job: jobs.Job, index: int) -> None:
        future = self.tile_pool.submit(tasks.render_tile, job.tile_task(index), self.store)
        future.add_done_callback(lambda f: self._tile_done(job, index, _error_of(f)))

    def _send_assemble(self, job_id: str) -> None:
        future = self.assemble_pool.submit(tasks.assemble, job_id, self.store)
        future.add_done_callback(lambda f: self._finish(job_id, _error_of(f)))

    def close(self) -> None:
        self.tile_pool.shutdown(wait=False, cancel_futures=True)
        self.assemble_pool.shutdown(wait=False, cancel_futures=True)


class HttpInvoker(Invoker):
    """POST to function URLs (an OpenFaaS gateway route or a Knative Service URL).

    Bounded concurrency (``http_concurrency`` calls in flight), a timeout per
    call, and retries with exponential backoff and jitter for connection errors,
    timeouts, 429 and 5xx. A 4xx other than 429 is the caller's fault: no retry.
    """

    RETRY_STATUSES = {429, 500, 502, 503, 504}

    def __init__(self, store: ObjectStore, settings: Settings) -> None:
        super().__init__(store)
        if not settings.render_tile_url or not settings.assemble_url:
            raise ValueError("the HTTP invoker needs FRACTALLY_RENDER_TILE_URL and FRACTALLY_ASSEMBLE_URL")
        import requests  # only this invoker needs it

        self.settings = settings
        self._requests = requests
        self._local = threading.local()
        self.pool = ThreadPoolExecutor(settings.http_concurrency, thread_name_prefix="http-invoke")

    def _session(self):
        if not hasattr(self._local, "session"):
            self._local.session = self._requests.Session()
        return self._local.session

    def call(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One function call with retries; raises RuntimeError with a user-safe message at the end."""
        last = "no attempt"
        for attempt in range(self.settings.http_retries + 1):
            if attempt:
                time.sleep(min(10.0, 0.25 * 2 ** attempt) * (0.5 + random.random()))
            try:
                resp = self._session().post(url, json=payload, timeout=self.settings.http_timeout)
            except self._requests.RequestException as err:
                last = type(err).__name__
                continue
            if resp.status_code < 300:
                return resp.json()
            last = f"HTTP {resp.status_code}"
            if resp.status_code not in self.RETRY_STATUSES:
                break
        raise RuntimeError(f"the function did not answer successfully ({last})")

    def _send_tile(self, job: jobs.Job, index: int) -> None:
        future = self.pool.submit(self.call, self.settings.render_tile_url, job.tile_task(index))
        future.add_done_callback(lambda f: self._tile_done(job, index, _error_of(f)))

    def _send_assemble(self, job_id: str) -> None:
        future = self.pool.submit(self.call, self.settings.assemble_url, {"job": job_id})
        future.add_done_callback(lambda f: self._finish(job_id, _error_of(f)))

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


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


def make_invoker(settings: Settings, store: ObjectStore) -> Invoker:
    if settings.invoker == "inprocess":
        return InProcessInvoker(store, settings.workers)
    if settings.invoker == "http":
        return HttpInvoker(store, settings)
    if settings.invoker == "queue":
        from fractally.queue import QueueInvoker

        return QueueInvoker(store, settings)
    raise ValueError(f"FRACTALLY_INVOKER must be inprocess, http or queue, got {settings.invoker!r}")


