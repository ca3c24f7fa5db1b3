"""The queue invoker and ``fractally worker`` against a real nats-server with JetStream.

Workers are real processes sharing a local-folder store; one is SIGKILLed in the middle of a
tile to show that an unacked task is redelivered, and failing tasks show that a job is marked
failed after ``max_deliveries`` attempts instead of retrying for ever.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fractally import jobs
from fractally.config import Settings
from fractally.jobs.queue import QueueInvoker, count_on
from fractally.jobs.service import Service
from fractally.picture.spec import parse_spec
from fractally.store import ObjectStore
from tests.support.queue import ROOT, WorkerProcess

#: Four tiles of about 0.3 s each (half the pixels never escape at max_iter 30 000),
#: with enough structure that a misplaced or missing tile would change the image.
SLOW_SPEC = {"fractal": "mandelbrot", "center": [-0.2, 0.0], "scale": 1.6, "width": 192, "height": 192,
             "max_iter": 30_000, "tile_size": 96, "format": "png"}
#: One fast tile.
SMALL_SPEC = {"c": [-0.8, 0.156], "width": 32, "height": 32, "tile_size": 32, "max_iter": 64, "format": "png"}


def submit(settings: Settings, raw: dict) -> tuple[QueueInvoker, jobs.Job]:
    """What the api does for POST /v1/renders with FRACTALLY_INVOKER=queue (its Service)."""
    service = Service.from_settings(settings)
    service.sync_pool.shutdown()
    current, created = service.submit(parse_spec(raw))
    assert created and current.status == "queued"
    assert isinstance(service.invoker, QueueInvoker)
    return service.invoker, current.job


def wait_status(store: ObjectStore, job_id: str, wanted: set[str], timeout: float = 40.0) -> jobs.Status:
    deadline = time.monotonic() + timeout
    while True:
        current = jobs.status(store, job_id)
        if current.status in wanted or time.monotonic() > deadline:
            return current
        time.sleep(0.1)


def kill_mid_tile(worker: WorkerProcess, store: ObjectStore, job: jobs.Job, delivery: int = 1,
                  tries: int = 4) -> int:
    """SIGKILL ``worker`` in the middle of a tile (delivery ``delivery``); the tile's index.

    The worker is stopped (SIGSTOP) as soon as it logs that it works on a tile, and killed only if
    that tile is not stored yet -- so before its ack, however loaded the machine; a tile it finished
    before the stop is let go and the next one it takes is tried (at most ``tries``)."""
    pattern = rf"tile (\d+): working \(delivery {delivery} "
    for n in range(1, tries + 1):
        line = worker.wait_for_nth(pattern, n)
        worker.pause()
        index = int(re.search(pattern, line).group(1))
        if not store.exists(jobs.tile_key(job.pixels_hash, index)):
            worker.kill()
            return index
        worker.resume()
    raise AssertionError(f"worker {worker.name} finished each of {tries} tiles before it could be stopped")


def rendered_by_cli(spec: dict, tmp_path: Path) -> bytes:
    """What ``fractally render`` writes for a julia ``spec`` of this module (c, size, tiles, max_iter)."""
    clean = tmp_path / "clean.png"
    c = ",".join(map(str, spec["c"]))
    subprocess.run([sys.executable, "-m", "fractally.cli", "render", f"--c={c}", "--width", str(spec["width"]),
                    "--height", str(spec["height"]), "--tile-size", str(spec["tile_size"]), "--max-iter",
                    str(spec["max_iter"]), "-q", "-o", str(clean)], cwd=ROOT, check=True, capture_output=True)
    return clean.read_bytes()


def tasks_left(invoker: QueueInvoker, job_id: str) -> int:
    return invoker._loop.run(count_on(invoker._jetstream(), invoker.subjects.stream,
                                      invoker.subjects.of_job(job_id)), 10)


def tasks_left_once_acked(invoker: QueueInvoker, job_id: str, timeout: float = 10.0) -> int:
    """``tasks_left`` once it reaches 0 or ``timeout`` passes: a worker acks its last task after it
    wrote the job's status, so on a loaded machine the ack may trail the status a moment."""
    deadline = time.monotonic() + timeout
    while True:
        left = tasks_left(invoker, job_id)
        if left == 0 or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def test_resubmitting_a_queued_job_publishes_nothing(queue_settings: Settings) -> None:
    """While a job's tasks wait in the stream, a second dispatch (any api replica) adds none."""
    invoker, job = submit(queue_settings, SLOW_SPEC)
    try:
        assert invoker.is_active(job.id)
        assert invoker.dispatch(job, jobs.missing_tiles(invoker.store, job)) is False
        assert tasks_left(invoker, job.id) == job.tiles_total
    finally:
        invoker.close()


@pytest.mark.slow
def test_job_completes_identically_when_a_worker_is_killed_mid_tile(
        queue_settings: Settings, start_worker: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    """SIGKILL during a tile: the unacked task goes to the other worker and the image is unchanged."""
    doomed = start_worker(queue_settings, "doomed")
    survivor = start_worker(queue_settings, "survivor")
    invoker, job = submit(queue_settings, SLOW_SPEC)
    try:
        index = kill_mid_tile(doomed, invoker.store, job)
        done = wait_status(invoker.store, job.id, {"done", "failed"})
        assert done.status == "done", done.error
        survivor.wait_for(rf"tile {index}: working \(delivery 2 ")  # the killed worker's tile, redelivered
        assert tasks_left_once_acked(invoker, job.id) == 0
    finally:
        invoker.close()
    clean = tmp_path / "clean.png"
    subprocess.run([sys.executable, "-m", "fractally.cli", "render", "--fractal", "mandelbrot", "--center=-0.2,0",
                    "--scale", "1.6", "--width", "192", "--height", "192", "--max-iter", "30000",
                    "--tile-size", "96", "-q", "-o", str(clean)], cwd=ROOT, check=True, capture_output=True)
    assert invoker.store.get(job.result_key) == clean.read_bytes()


@pytest.mark.slow
def test_task_failing_every_time_fails_its_job_after_max_deliveries(
        queue_settings: Settings, start_worker: Callable[..., WorkerProcess]) -> None:
    """A tile whose key cannot be written is tried max_deliveries (3) times, then the job is failed."""
    store = queue_settings.open_store()
    job, _ = jobs.create(store, parse_spec(SMALL_SPEC))
    blocked = Path(queue_settings.store_url, *jobs.pack_key(job.pixels_hash, 0, 1).split("/"))  # its batch's pack
    (blocked / "in-the-way").mkdir(parents=True)  # a folder where the tile's file must go
    worker = start_worker(queue_settings)
    invoker = QueueInvoker(store, queue_settings)
    try:
        assert invoker.dispatch(job, [0])
        failed = wait_status(store, job.id, {"done", "failed"}, timeout=60)  # 3 deliveries with backoff, on a loaded machine
        assert failed.status == "failed"
        assert "after 3 attempts" in failed.error["message"]
        worker.wait_for(r"tile 0: failed on its last delivery \(3\)")  # the log may trail the store
        assert len(worker.matching(r"tile 0: working \(delivery \d of 3\)")) == 3
        assert tasks_left_once_acked(invoker, job.id) == 0
    finally:
        invoker.close()


@pytest.mark.slow
def test_worker_dying_on_the_last_delivery_fails_the_job(
        queue_settings: Settings, start_worker: Callable[..., WorkerProcess]) -> None:
    """With one delivery allowed, a worker killed mid-tile leaves a failed job, not a stuck one."""
    settings = queue_settings.with_(max_deliveries=1)
    first, second = start_worker(settings, "first"), start_worker(settings, "second")
    invoker, job = submit(settings, {**SLOW_SPEC, "width": 96, "height": 96, "max_iter": 100_000})  # one tile, ~1 s
    try:
        deadline = time.monotonic() + 20
        taken = []
        while not taken and time.monotonic() < deadline:  # bounded: either worker may take the one tile
            taken = [worker for worker in (first, second) if worker.matching(r"tile 0: working")]
            time.sleep(0.01)
        assert taken, "no worker took the tile"
        kill_mid_tile(taken[0], invoker.store, job, tries=1)
        failed = wait_status(invoker.store, job.id, {"done", "failed"}, timeout=20)
        assert failed.status == "failed"
        assert "the worker stopped" in failed.error["message"]
        assert tasks_left_once_acked(invoker, job.id) == 0
    finally:
        invoker.close()


def test_a_row_sent_in_parts_gets_its_band_made_by_a_task_of_its_own(
        queue_settings: Settings, start_worker: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    """As the HTTP invoker calls assemble for a row cut into parts, the queue's last part of a row queues
    the row's band; the result is still the bytes ``fractally render`` makes."""
    settings = queue_settings.with_(batches=64)  # 16 tiles in 16 tasks: every row in 4 parts
    spec = {"c": [-0.8, 0.156], "width": 64, "height": 64, "tile_size": 16, "max_iter": 200, "format": "png"}
    worker = start_worker(settings)
    invoker, job = submit(settings, spec)
    try:
        done = wait_status(invoker.store, job.id, {"done", "failed"})
        assert done.status == "done", done.error
        for row in range(4):
            worker.wait_for(rf"job {job.id}: row {row} is stored; its band queued")
            worker.wait_for(rf"job {job.id} the band of row {row}: done")
    finally:
        invoker.close()
    assert invoker.store.get(job.result_key) == rendered_by_cli(spec, tmp_path)


def test_a_done_count_that_runs_ahead_still_ends_in_one_result(
        queue_settings: Settings, start_worker: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    """A task done twice (its first ack lost) leaves two markers, so the count reaches the job's before
    its last task is done: the assembly is queued early, and again by the real last task."""
    settings = queue_settings.with_(batches=4)
    spec = {"c": [-0.8, 0.156], "width": 64, "height": 64, "tile_size": 32, "max_iter": 200, "format": "png"}
    invoker, job = submit(settings, spec)
    invoker._loop.run(invoker._jetstream().publish(invoker.subjects.done(job.id), b"",
                                                   stream=invoker.subjects.done_stream), 10)
    worker = start_worker(settings)
    try:
        done = wait_status(invoker.store, job.id, {"done", "failed"})
        assert done.status == "done", done.error
        worker.wait_for_nth(rf"job {job.id}: every task is done; assembly queued", 2)
    finally:
        invoker.close()
    assert invoker.store.get(job.result_key) == rendered_by_cli(spec, tmp_path)
