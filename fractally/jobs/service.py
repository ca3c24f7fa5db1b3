"""The api's core: submit, status, result and synchronous renders, over a store and an invoker.

Free of any web framework (TiTiler's core/application split): the Flask app in
``functions/api`` only turns HTTP into these calls and their answers into JSON.
"""

from __future__ import annotations

import io
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from fractally import jobs
from fractally.jobs import lease, tasks
from fractally.picture import orbit
from fractally.picture.compose import CONTENT_TYPES, render_image
from fractally.config import Settings
from fractally.jobs.invoke import HttpInvoker, InProcessInvoker, Invoker
from fractally.picture.spec import RenderSpec
from fractally.store import ObjectStore

log = logging.getLogger("fractally.jobs.service")

#: Manifests a replica keeps in memory (``Service._job``).
MANIFESTS_KEPT = 4096
#: A job in one of these states is still to be carried on by some api replica.
UNFINISHED = ("queued", "running", "assembling")


def make_invoker(settings: Settings, store: ObjectStore) -> Invoker:
    """The invoker ``FRACTALLY_INVOKER`` names (the queue's needs the nats client, imported only then)."""
    if settings.invoker == "inprocess":
        return InProcessInvoker(store, settings.workers, settings.lease_timeout)
    if settings.invoker == "http":
        return HttpInvoker(store, settings)
    if settings.invoker == "queue":
        from fractally.jobs.queue import QueueInvoker

        return QueueInvoker(store, settings)
    raise ValueError(f"FRACTALLY_INVOKER must be inprocess, http or queue, got {settings.invoker!r}")


@dataclass
class Service:
    settings: Settings
    store: ObjectStore
    invoker: Invoker
    sync_pool: ThreadPoolExecutor
    _manifests: dict[str, jobs.Job] = field(default_factory=dict)
    _manifests_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Service":
        store = settings.open_store()
        return cls(settings, store, make_invoker(settings, store),
                   ThreadPoolExecutor(max(1, settings.workers), thread_name_prefix="sync-render"))

    def submit(self, spec: RenderSpec) -> tuple[jobs.Status, bool]:
        """Create the job (or find the identical one) and make sure its work is under way.

        Resubmitting a failed job retries it; resubmitting one that no invoker runs
        (say, after a restart) sends only its missing tiles. One that another api replica runs
        (its dispatch lease is live: ``Invoker.dispatch``) is left to it.
        """
        job, created = jobs.create(self.store, spec)
        current = jobs.status(self.store, job.id)
        if current.status == "done":
            return current, created
        orbit.prepare(spec, self.store)  # a deep job's reference orbits, once, before any tile is sent
        if current.status == "failed":
            jobs.clear_failed(self.store, job.id)
        if not self.invoker.is_active(job.id):
            self.invoker.dispatch(job, jobs.missing_tiles(self.store, job))  # no-op if another replica runs it
        return jobs.status(self.store, job.id), created

    def status(self, job_id: str) -> jobs.Status:
        """Off the store; for a job this process runs, its manifest and tile count come from the
        invoker's memory (no manifest read, no listing of thousands of tiles per poll)."""
        live = self.invoker.progress(job_id)
        if live is None:
            current = jobs.status_of(self.store, self._job(job_id))
            if current.status in UNFINISHED and not self.invoker.durable:
                self._carry_on(current)
            return current
        job, tiles_done = live
        return jobs.status_of(self.store, job, tiles_done)

    def _job(self, job_id: str) -> jobs.Job:
        """The job's manifest, read once: it never changes (the id is its spec's hash), so a poll need not
        read it again."""
        job = self._manifests.get(job_id)
        if job is None:
            job = jobs.load(self.store, job_id)
            with self._manifests_lock:
                self._manifests[job_id] = job
                while len(self._manifests) > MANIFESTS_KEPT:
                    self._manifests.pop(next(iter(self._manifests)))
        return job

    def _carry_on(self, current: jobs.Status) -> None:
        """Dispatch an unfinished job that nobody carries on: the api replica that ran it is gone (killed,
        scaled down, replaced by a new revision) and its dispatch lease expired, or was released when it
        stopped. Costs one GET (the lease) a poll while another replica runs the job, and a second (the
        assembly claim) while it is being assembled; taking a job over costs the lease write and a listing
        of its tiles, and only the missing ones are sent (all there: the assembly).

        Not for a durable invoker (the queue): its tasks outlive any replica.
        """
        job = current.job
        if lease.is_held(self.store, jobs.dispatch_key(job.id), self.invoker.lease_timeout):
            return
        if current.status == "assembling" and lease.is_held(self.store, jobs.claim_key(job.id), tasks.CLAIM_TIMEOUT):
            return  # an assembler is at work: its replica is gone, but the assembly carries on without it
        if self.invoker.dispatch(job, jobs.missing_tiles(self.store, job)):
            log.info("job %s: carried on after the replica that ran it stopped", job.id)

    def result_url(self, job: jobs.Job) -> str:
        return self.store.url(job.result_key, self.settings.url_expiry)

    def result_bytes(self, job: jobs.Job) -> bytes:
        return self.store.get(job.result_key)

    def render_sync(self, spec: RenderSpec) -> tuple[bytes, str]:
        """A small image rendered now, on the sync pool (the caller's thread only waits)."""
        out = io.BytesIO()
        render_image(spec, out, self.sync_pool)
        return out.getvalue(), CONTENT_TYPES[spec.format]

    def close(self) -> None:
        self.invoker.close()
        self.sync_pool.shutdown(wait=False, cancel_futures=True)
