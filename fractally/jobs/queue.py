"""The queue invoker and its worker: tile tasks on NATS JetStream, durable and redelivered.

Two streams (names from ``settings.nats_stream``, subjects under ``settings.nats_subject``,
both created on first use)::

    <stream>        work queue    <subject>.tiles.<job id>     one task per batch of tiles (JSON: job, spec,
                                                                 first, count: ``invoke.plan_batches``)
                                  <subject>.assemble.<job id>  "assemble this job" (JSON: job)
    <stream>_DONE   limits, 1 day <subject>.done.<job id>      one small marker per finished task

**The api** (``QueueInvoker``) publishes a job's missing tiles and returns once JetStream has
stored them. A work-queue stream deletes a task when it is acked, so a job is *active* while any
of its tasks is still in the stream; resubmitting an active job publishes nothing, whichever api
replica is asked. The api never hears back: status is read off the store, as with every invoker.

**Workers** (``fractally worker``, any number, one durable pull consumer) take one task per free
slot, call ``tasks.render`` (a batch of tiles: one pack, and the pieces of its whole tile rows) and
ack only after the tiles are in the store.

**Completion.** No process sees every tile, so each worker, after storing its task's tiles, publishes a
done marker and reads how many markers the job has (JetStream answers a publish only once the
message is stored, so the worker that stores the last batch sees them all). When the count reaches
the number of tasks the api published (sent in the ``Fractally-Tasks`` header), that worker
checks the store once — the store, not the count, is the truth: a marker sent twice by a
redelivered task only causes an extra check — and publishes an assemble task. Assembly runs on a
worker too (the api does no CPU work). Two workers finishing together may both publish it;
``tasks.assemble`` claims the job and writes put-if-absent, so there is one result, and a
*redelivered* assemble task (its first worker died) forces past the dead worker's claim.

**Failure.** A task that raises is nak'ed with a growing delay and redelivered; one that is never
acked (its worker died) is redelivered after ``nats_ack_wait``. A busy worker sends "in progress"
every third of that, so a long tile is not redelivered while its worker lives. On its
``max_deliveries``-th delivery a failing task marks its job failed (``jobs.mark_failed``, a
message for the user) and is terminated. If a worker dies during that last delivery, JetStream
publishes a max-deliveries advisory; a worker marks the job failed and deletes the task. Tasks of
a failed job are acked without rendering.

The nats client is asyncio; ``QueueInvoker`` runs one event loop in a background thread and
blocks the calling (request) thread only while JetStream stores the tasks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Awaitable, Callable, TypeVar

from fractally import jobs
from fractally.jobs import tasks
from fractally.config import Settings
from fractally.errors import FractallyError
from fractally.jobs.invoke import Invoker, plan_batches, row_parts
from fractally.store import ObjectStore

log = logging.getLogger("fractally.jobs.queue")
T = TypeVar("T")

#: The durable consumer every worker pulls from (one consumer, so each task goes to one worker).
CONSUMER = "workers"
#: Headers on a tile task: how many tiles, and in how many tasks, the api published for this round of
#: the job (a task's worker publishes one done marker; the one that sees as many as there were tasks
#: checks the store and queues the assembly).
TILES_HEADER = "Fractally-Tiles"
TASKS_HEADER = "Fractally-Tasks"
#: Headers on a task that is one part of a tile row: the row, how many parts it has in this round, and
#: the round's id. Each part's worker leaves a row marker; the one that sees them all queues the row's band
#: (``{"job", "bands": [row, row + 1]}`` on the assemble subject), as the HTTP invoker calls assemble for
#: it. Markers are per round, so those of an earlier round of the job never count.
ROW_HEADER = "Fractally-Row"
ROW_PARTS_HEADER = "Fractally-Row-Parts"
ROUND_HEADER = "Fractally-Round"
#: How long done markers are kept (they only matter while a job runs).
DONE_MAX_AGE = 24 * 3600.0
#: Publishes in flight at once when the api queues a job.
PUBLISH_BATCH = 256
#: Jobs whose progress a queue api replica remembers (the latest it queued).
PUBLISHED_KEPT = 1024
#: Tasks a job is cut into unless ``FRACTALLY_BATCHES`` says (the api does not know how many workers
#: there are): enough to keep a few dozen workers busy, few enough that a task is worth its messages.
QUEUE_BATCHES = 64
CONNECT_TIMEOUT = 10.0


class QueueUnavailable(FractallyError):
    """NATS could not be reached or did not store the tasks; the request can be retried."""

    status = 503
    code = "queue_unavailable"


@dataclass(frozen=True)
class Subjects:
    """Stream and subject names for one deployment (two deployments can share a NATS server)."""

    stream: str
    prefix: str

    @classmethod
    def of(cls, settings: Settings) -> "Subjects":
        return cls(settings.nats_stream, settings.nats_subject)

    @property
    def done_stream(self) -> str:
        return f"{self.stream}_DONE"

    def tiles(self, job_id: str) -> str:
        return f"{self.prefix}.tiles.{job_id}"

    def assemble(self, job_id: str) -> str:
        return f"{self.prefix}.assemble.{job_id}"

    def done(self, job_id: str) -> str:
        return f"{self.prefix}.done.{job_id}"

    def row_done(self, job_id: str, row: int, round_id: str) -> str:
        """A row part's marker: one token under the done stream's ``done.*``, like the job's."""
        return f"{self.prefix}.done.{job_id}-r{row}-{round_id}"

    def of_job(self, job_id: str) -> str:
        """Every task subject of a job (tiles and assembly)."""
        return f"{self.prefix}.*.{job_id}"

    def parse(self, subject: str) -> tuple[str, str]:
        """(kind, job id) of a task subject: kind is ``tiles`` or ``assemble``."""
        head, kind, job_id = subject.rsplit(".", 2)
        if head != self.prefix or kind not in ("tiles", "assemble"):
            raise ValueError(f"not a task subject: {subject!r}")
        return kind, job_id

    def max_deliveries_advisory(self) -> str:
        return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.{CONSUMER}"


async def connect(settings: Settings, name: str) -> Any:
    """A nats connection that reconnects for ever (NATS restarting must not end a worker)."""
    import nats

    async def on_error(err: Exception) -> None:
        log.warning("NATS %s: %s", settings.nats_url, type(err).__name__)

    return await nats.connect(settings.nats_url, name=name, connect_timeout=5, reconnect_time_wait=2,
                              max_reconnect_attempts=-1, error_cb=on_error)


async def ensure_streams(js: Any, subjects: Subjects) -> None:
    """Create the task and done streams unless they exist (racing creators are fine)."""
    from nats.js.api import RetentionPolicy, StorageType, StreamConfig
    from nats.js.errors import BadRequestError, NotFoundError

    wanted = [
        StreamConfig(name=subjects.stream, subjects=[subjects.tiles("*"), subjects.assemble("*")],
                     retention=RetentionPolicy.WORK_QUEUE, storage=StorageType.FILE),
        StreamConfig(name=subjects.done_stream, subjects=[subjects.done("*")],
                     retention=RetentionPolicy.LIMITS, storage=StorageType.FILE, max_age=DONE_MAX_AGE),
    ]
    for config in wanted:
        try:
            await js.stream_info(config.name)
            continue
        except NotFoundError:
            pass
        try:
            await js.add_stream(config)
            log.info("created JetStream stream %s (%s)", config.name, ", ".join(config.subjects))
        except BadRequestError:
            await js.stream_info(config.name)  # another process created it first


async def count_on(js: Any, stream: str, subject: str) -> int:
    """Messages stored on subjects matching ``subject`` (a wildcard allowed)."""
    info = await js.stream_info(stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


class LoopThread:
    """An asyncio event loop in a daemon thread, for calling the nats client from plain threads."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


class QueueInvoker(Invoker):
    """The api side: publish a job's tile tasks to JetStream; workers do the rest (module docstring)."""

    durable = True  # the tasks live in JetStream: no dispatch lease, no other replica carries a job on

    def __init__(self, store: ObjectStore, settings: Settings) -> None:
        super().__init__(store)
        self.settings = settings
        self.subjects = Subjects.of(settings)
        self._loop = LoopThread("fractally-nats")
        self._nc: Any = None
        self._js: Any = None
        self._connect_lock = threading.Lock()
        #: job id -> (job, tiles stored before, tiles per task) of the jobs this replica queued
        self._published: dict[str, tuple[jobs.Job, int, float]] = {}

    # -- connection (lazy, so the api starts even while NATS is still coming up) ------------

    def _jetstream(self) -> Any:
        with self._connect_lock:
            if self._js is None:
                try:
                    self._nc, self._js = self._loop.run(self._connect(), CONNECT_TIMEOUT + 5)
                except Exception as err:
                    log.error("cannot reach NATS at %s: %s", self.settings.nats_url, type(err).__name__)
                    raise QueueUnavailable("the render queue is unavailable; try again shortly") from None
            return self._js

    async def _connect(self) -> tuple[Any, Any]:
        nc = await asyncio.wait_for(connect(self.settings, f"fractally-api@{socket.gethostname()}"),
                                    CONNECT_TIMEOUT)
        js = nc.jetstream()
        await ensure_streams(js, self.subjects)
        return nc, js

    def _call(self, make: Callable[[Any], Awaitable[T]], timeout: float = 60.0) -> T:
        js = self._jetstream()
        try:
            return self._loop.run(make(js), timeout)
        except FractallyError:
            raise
        except Exception as err:
            log.error("NATS request failed: %r", err)
            raise QueueUnavailable("the render queue did not answer; try again shortly") from None

    # -- the Invoker interface ---------------------------------------------------------------

    def is_active(self, job_id: str) -> bool:
        """True while any task of the job is in the stream (queued, or taken and not yet acked)."""
        return self._call(lambda js: count_on(js, self.subjects.stream, self.subjects.of_job(job_id))) > 0

    def dispatch(self, job: jobs.Job, indices: list[int]) -> bool:
        """Publish ``indices`` in batches (or the assembly if none), unless the job is active.

        Returns once JetStream has stored every task, so an accepted job survives an api restart.
        """
        if self.is_active(job.id):
            return False
        tasks_sent = self._call(lambda js: self._publish_job(js, job, indices), timeout=max(60.0, len(indices) / 50))
        log.info("job %s: %d tile(s) queued on %s", job.id, len(indices), self.subjects.tiles(job.id))
        with self._lock:
            self._published[job.id] = (job, job.tiles_total - len(indices), len(indices) / max(1, tasks_sent))
            while len(self._published) > PUBLISHED_KEPT:
                self._published.pop(next(iter(self._published)))
        return True

    def _batches(self) -> int:
        return self.settings.batches or QUEUE_BATCHES

    def progress(self, job_id: str) -> tuple[jobs.Job, int] | None:
        """For a job this replica queued: its tiles done, counted off the done markers (one NATS request)
        instead of listing the store -- a marker a task, so to within one task's tiles. Other replicas (or
        NATS away): None, and the store is read."""
        with self._lock:
            published = self._published.get(job_id)
        if published is None:
            return None
        job, present, per_task = published
        try:
            done = self._call(lambda js: count_on(js, self.subjects.done_stream, self.subjects.done(job_id)), 5.0)
        except QueueUnavailable:
            return None
        return job, min(job.tiles_total, present + round(done * per_task))

    async def _publish_job(self, js: Any, job: jobs.Job, indices: list[int]) -> int:
        """Publish the job's tasks (its assembly if no tile is missing); how many tile tasks."""
        if not indices:
            await self._publish_assemble(js, job.id)
            return 0
        await js.purge_stream(self.subjects.done_stream, subject=self.subjects.done(job.id))
        subject = self.subjects.tiles(job.id)
        batches = plan_batches(job.spec, indices, self._batches())
        headers = {TILES_HEADER: str(len(indices)), TASKS_HEADER: str(len(batches))}
        round_id = uuid.uuid4().hex[:12]
        part_of = {run: {ROW_HEADER: str(row), ROW_PARTS_HEADER: str(len(runs)), ROUND_HEADER: round_id}
                   for row, runs in row_parts(job.spec, batches).items() for run in runs}

        def headers_of(first: int, end: int) -> dict[str, str]:
            return {**headers, **part_of[(first, end)]} if (first, end) in part_of else headers

        for start in range(0, len(batches), PUBLISH_BATCH):
            await asyncio.gather(*(
                js.publish(subject, json.dumps(job.batch_task(first, end)).encode(), stream=self.subjects.stream,
                           headers=headers_of(first, end), timeout=10)
                for first, end in batches[start:start + PUBLISH_BATCH]))
        return len(batches)

    async def _publish_assemble(self, js: Any, job_id: str) -> None:
        await js.publish(self.subjects.assemble(job_id), json.dumps({"job": job_id}).encode(),
                         stream=self.subjects.stream, timeout=10)

    def _send_assemble(self, job_id: str) -> None:
        self._call(lambda js: self._publish_assemble(js, job_id))

    def close(self) -> None:
        if self._nc is not None:
            try:
                self._loop.run(self._nc.drain(), 10)
            except Exception as err:  # closing anyway
                log.debug("drain failed: %r", err)
        self._loop.stop()


# --------------------------------------------------------------------------------------------
# The worker


def _user_message(err: BaseException) -> str:
    """What the user may read about a failure: our own messages, otherwise only the error's type."""
    if isinstance(err, FractallyError):
        return err.message
    return f"internal error ({type(err).__name__})"


def _attempts(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _label(body: Any) -> str:
    """The task's tiles, for logs and the user's failure message."""
    if not isinstance(body, dict):
        return "a tile task"
    first, count = body.get("first"), body.get("count")
    if isinstance(first, int) and isinstance(count, int) and count > 1:
        return f"tiles {first}-{first + count - 1}"
    return f"tile {first if isinstance(first, int) else body.get('tile')}"


def _assemble_label(body: Any) -> str:
    bands = body.get("bands") if isinstance(body, dict) else None
    if isinstance(bands, list) and len(bands) == 2:
        return f"the band of row {bands[0]}" if bands[1] == bands[0] + 1 else f"rows {bands[0]}-{bands[1] - 1}"
    return "the final image"


def retry_delay(delivered: int) -> float:
    """Seconds before a failed task is offered again: 0.5, 1, 2, ... capped at 30."""
    return min(30.0, 0.5 * 2 ** max(0, delivered - 1))


class Worker:
    """``fractally worker``: pull tasks, run them, ack after the store has the result."""

    def __init__(self, store: ObjectStore, settings: Settings, concurrency: int = 1) -> None:
        self.store = store
        self.settings = settings
        self.subjects = Subjects.of(settings)
        self.concurrency = max(1, concurrency)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="worker")
        self.nc: Any = None
        self.js: Any = None
        self.stopping = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def _ensure_consumer(self) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import BadRequestError

        config = ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT,
                                deliver_policy=DeliverPolicy.ALL, ack_wait=self.settings.nats_ack_wait,
                                max_deliver=self.settings.max_deliveries, max_ack_pending=-1)
        try:
            await self.js.add_consumer(self.subjects.stream, config)  # creates, or updates ack_wait etc.
        except BadRequestError as err:
            info = await self.js.consumer_info(self.subjects.stream, CONSUMER)
            log.warning("using consumer %s as it is (ack_wait %ss, max_deliver %s): %s", CONSUMER,
                        info.config.ack_wait, info.config.max_deliver, err)

    async def run(self) -> None:
        """Work until ``stopping`` is set, then finish the tasks in hand (SIGTERM in a pod)."""
        self.nc = await connect(self.settings, f"fractally-worker@{socket.gethostname()}:{os.getpid()}")
        self.js = self.nc.jetstream()
        await ensure_streams(self.js, self.subjects)
        await self._ensure_consumer()
        psub = await self.js.pull_subscribe_bind(durable=CONSUMER, stream=self.subjects.stream)
        await self.nc.subscribe(self.subjects.max_deliveries_advisory(), queue="fractally-workers",
                                cb=self._on_max_deliveries)
        log.info("worker ready: %d slot(s), stream %s, consumer %s, store %s", self.concurrency,
                 self.subjects.stream, CONSUMER, self.store.describe())
        from nats.errors import TimeoutError as FetchTimeout

        slots = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task] = set()
        while not self.stopping.is_set():
            await slots.acquire()
            if self.stopping.is_set():
                slots.release()
                break
            fetch = asyncio.ensure_future(psub.fetch(1, timeout=5))
            stop = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait({fetch, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not fetch.done():  # stopping: a task delivered just now comes back after ack_wait
                fetch.cancel()
                slots.release()
                break
            try:
                msgs = fetch.result()
            except (FetchTimeout, asyncio.TimeoutError):
                slots.release()
                continue
            except Exception as err:  # disconnected: the client reconnects by itself
                slots.release()
                log.warning("fetch failed: %r", err)
                await asyncio.sleep(1)
                continue
            task = asyncio.create_task(self._handle(msgs[0]))
            running.add(task)
            task.add_done_callback(lambda t: (running.discard(t), slots.release()))
        if running:
            log.info("stopping: finishing %d task(s)", len(running))
            await asyncio.gather(*running, return_exceptions=True)
        # Every task in hand is acked (or nak'ed) by now; drain() would wait on the pull
        # subscription's unread status messages, so flush and close instead.
        await self.nc.flush(timeout=5)
        await self.nc.close()

    async def _keep_alive(self, msg: Any) -> None:
        """Tell JetStream the task is still being worked on, so it is not redelivered meanwhile."""
        every = max(0.2, self.settings.nats_ack_wait / 3)
        while True:
            await asyncio.sleep(every)
            try:
                await msg.in_progress()
            except Exception as err:
                log.debug("in_progress failed: %r", err)

    async def _handle(self, msg: Any) -> None:
        delivered = msg.metadata.num_delivered
        try:
            kind, job_id = self.subjects.parse(msg.subject)
            jobs.check_job_id(job_id)
            body = json.loads(msg.data)
        except (ValueError, FractallyError):
            log.error("dropping a malformed task on %s", msg.subject)
            await msg.term()
            return
        label = _label(body) if kind == "tiles" else _assemble_label(body)
        what = f"job {job_id} {label}"
        started = time.perf_counter()
        alive = asyncio.create_task(self._keep_alive(msg))
        try:
            if await asyncio.to_thread(self.store.exists, jobs.failed_key(job_id)):
                log.info("%s: skipped, the job has failed", what)
                await msg.ack()
                return
            log.info("%s: working (delivery %d of %d)", what, delivered, self.settings.max_deliveries)
            if kind == "tiles":
                await self._run(tasks.render, body, self.store)
            elif isinstance(body, dict) and "bands" in body:
                await self._run(tasks.assemble_bands, job_id, body["bands"], self.store)
            else:
                result = await self._run(lambda: tasks.assemble(job_id, self.store, force=delivered > 1))
                if result.get("status") == "incomplete":
                    log.info("%s: not complete yet (%s tile(s) missing); the job's last task queues it again",
                             what, result.get("missing"))
        except Exception as err:
            alive.cancel()
            await self._failed(msg, what, label, job_id, delivered, err)
            return
        try:
            if kind == "tiles":
                await self._tiles_stored(job_id, msg.headers or {})
        except Exception as err:  # the tile is stored; retrying the task redoes only this check
            alive.cancel()
            await self._failed(msg, what, label, job_id, delivered, err)
            return
        alive.cancel()
        try:
            await msg.ack_sync()
        except Exception as err:  # not acked: the task comes back and finds its work done
            log.warning("%s: ack failed (%r); it will be redelivered", what, err)
            return
        log.info("%s: done in %.2f s", what, time.perf_counter() - started)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _failed(self, msg: Any, what: str, label: str, job_id: str, delivered: int,
                      err: Exception) -> None:
        if delivered < self.settings.max_deliveries:
            log.warning("%s: failed (delivery %d of %d, %s); retrying", what, delivered,
                        self.settings.max_deliveries, type(err).__name__, exc_info=err)
            await msg.nak(delay=retry_delay(delivered))
            return
        log.error("%s: failed on its last delivery (%d)", what, delivered, exc_info=err)
        message = f"{label} could not be made after {_attempts(delivered)} ({_user_message(err)})"
        await asyncio.to_thread(jobs.mark_failed, self.store, job_id, message)
        await msg.term()

    async def _tiles_stored(self, job_id: str, headers: dict[str, str]) -> None:
        """Publish the task's done marker (and its row's, for a part of a row, queueing the row's band
        when its parts are all in); once the markers say the job is complete, queue its assembly.

        The count can run ahead (a task done twice, its first ack lost, leaves two markers): then the
        assembly finds a band it cannot make yet, answers "incomplete", and the real last task queues
        it again. That is cheaper than listing the job's tiles here after every last task (thousands
        of packs for a gigapixel); the assembly's own check lists no tiles when the pieces and row
        parts cover the image. A task without the count (sent by something else) checks the store."""
        if ROW_PARTS_HEADER in headers:
            await self._row_part_stored(job_id, headers)
        await self.js.publish(self.subjects.done(job_id), b"", stream=self.subjects.done_stream, timeout=10)
        try:
            expected = int(headers.get(TASKS_HEADER) or headers.get(TILES_HEADER) or "0")
        except ValueError:
            expected = 0
        if await count_on(self.js, self.subjects.done_stream, self.subjects.done(job_id)) < max(1, expected):
            return
        if expected < 1:
            job = await asyncio.to_thread(jobs.load, self.store, job_id)
            missing = await asyncio.to_thread(jobs.missing_tiles, self.store, job)
            if missing:
                log.info("job %s: %d tile(s) still missing", job_id, len(missing))
                return
        await self.js.publish(self.subjects.assemble(job_id), json.dumps({"job": job_id}).encode(),
                              stream=self.subjects.stream, timeout=10)
        log.info("job %s: every task is done; assembly queued", job_id)

    async def _row_part_stored(self, job_id: str, headers: dict[str, str]) -> None:
        """A part of a tile row is stored: leave its marker, and queue the row's band if it was the last.
        Two parts finishing at once may both queue it: a band is made of stored tiles, the same bytes
        each time (``tasks.assemble_bands``)."""
        try:
            row, parts = int(headers[ROW_HEADER]), int(headers[ROW_PARTS_HEADER])
        except (KeyError, ValueError):
            return  # not a task this api wrote: the final assembly makes the row
        marker = self.subjects.row_done(job_id, row, headers.get(ROUND_HEADER, "-"))
        await self.js.publish(marker, b"", stream=self.subjects.done_stream, timeout=10)
        if await count_on(self.js, self.subjects.done_stream, marker) >= parts:
            await self.js.publish(self.subjects.assemble(job_id), json.dumps({"job": job_id, "bands": [row, row + 1]}).encode(),
                                  stream=self.subjects.stream, timeout=10)
            log.info("job %s: row %d is stored; its band queued", job_id, row)

    async def _on_max_deliveries(self, advisory: Any) -> None:
        """A task's last delivery was never acked (its worker died): fail the job, drop the task."""
        from nats.js.errors import NotFoundError

        try:
            event = json.loads(advisory.data)
            seq = int(event["stream_seq"])
            raw = await self.js.get_msg(self.subjects.stream, seq)
            kind, job_id = self.subjects.parse(raw.subject)
            body = json.loads(raw.data)
        except NotFoundError:
            return  # already gone (acked or terminated)
        except Exception as err:
            log.error("cannot read a max-deliveries advisory: %r", err)
            return
        what = _label(body) if kind == "tiles" else "the final image"
        deliveries = int(event.get("deliveries") or self.settings.max_deliveries)
        message = (f"{what} was not finished after {_attempts(deliveries)} "
                   "(the worker stopped each time, e.g. out of memory or time)")
        log.error("job %s: %s", job_id, message)
        await asyncio.to_thread(jobs.mark_failed, self.store, job_id, message)
        try:
            await self.js.delete_msg(self.subjects.stream, seq)
        except NotFoundError:
            pass


#: Every path the worker's health server answers, all alike: ours, and those OpenFaaS probes
#: (``/_/health`` on Community Edition, whatever the annotations say). Connected to NATS is both
#: alive and ready: a worker has nothing else to wait for.
HEALTH_PATHS = ("/healthz", "/readyz", "/_/health", "/_/ready")


class _Health(BaseHTTPRequestHandler):
    worker: Worker

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?")[0]
        if path not in HEALTH_PATHS:
            status, body = 404, json.dumps({"error": {"code": "not_found", "message": "no such endpoint; "
                                            f"probe one of {', '.join(HEALTH_PATHS)}", "field": None}}).encode()
        else:
            ok = self.worker.connected
            status, body = (200 if ok else 503), json.dumps({"status": "ok" if ok else "unavailable"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:  # probes every few seconds: not worth a log line
        pass


def serve_health(worker: Worker, host: str, port: int) -> ThreadingHTTPServer:
    """``GET`` any of ``HEALTH_PATHS``: 200 while the worker is connected to NATS, else 503 (a
    liveness and readiness probe); other paths 404."""
    handler = type("Health", (_Health,), {"worker": worker})
    server = ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def run_worker(settings: Settings, concurrency: int, health: tuple[str, int] | None = None) -> int:
    """The body of ``fractally worker``: warm the kernels, then work until SIGTERM or SIGINT."""
    from fractally.picture.warmup import freeze_loaded_objects, warm

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    warm()  # compile or load the kernels now, not inside the first task
    freeze_loaded_objects()  # and keep full garbage collections off everything loaded so far
    worker = Worker(settings.open_store(), settings, concurrency)
    server = serve_health(worker, *health) if health else None

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stopping.set)
        await worker.run()

    try:
        asyncio.run(main())
    finally:
        if server is not None:
            server.shutdown()
        worker.pool.shutdown(wait=False)
    return 0


__all__ = ["QueueInvoker", "QueueUnavailable", "Subjects", "Worker", "run_worker"]
