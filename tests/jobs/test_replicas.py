"""A stateless api: any replica carries on a job another replica started (docs/reliability.md,
"Api replicas").

The replica that dispatches a job holds its dispatch lease (``jobs/<id>/dispatch.lease``) and renews it;
a replica answering a status poll for an unfinished job it does not run, whose lease is absent or no
longer live, takes the lease and sends the job's missing tiles. The in-process cases run two
``Service``s over one folder; the process cases run api replicas as real gunicorn processes over the
stack's S3 server and functions (``tests/support/replicas.py``), one of them in a pid namespace of its
own (same hostname, other pids: containers on the host's network), and end in the image
``fractally render`` makes.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest
import requests

from fractally import jobs
from fractally.jobs import lease, tasks
from fractally.store import orphans
from fractally.picture.spec import parse_spec
from fractally.store import LocalStore
from fractally.picture.tiling import tile_count
from tests.support.store import GatedStore
from tests.jobs.test_faults import cli_render, gone

SMALL = {"c": [-0.8, 0.156], "width": 48, "height": 32, "tile_size": 16, "max_iter": 200}


def _wait(predicate, timeout: float = 90.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.02)


class CountingStore(LocalStore):
    """A folder store that counts the tile writes made through it."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.tile_puts: list[str] = []

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        if key.startswith("tiles/"):
            self.tile_puts.append(key)
        super().put(key, data, content_type)


def _done(service, job_id: str) -> bool:
    status = service.status(job_id)
    assert status.status != "failed", status.error
    return status.status == "done"


def _lease(store, job_id: str) -> lease.Held | None:
    return lease.read(store, jobs.dispatch_key(job_id))


# --- in-process replicas --------------------------------------------------------------------------

def test_a_live_lease_is_respected_while_its_holder_renews_it(tmp_path, replica_services):
    gated = GatedStore(tmp_path / "store")
    a = replica_services(gated, lease_timeout=0.3)
    b = replica_services(LocalStore(tmp_path / "store"), lease_timeout=0.3)
    job = a.submit(parse_spec(SMALL))[0].job
    first = _lease(gated, job.id)
    seen = set()
    deadline = time.monotonic() + 4 * 0.3  # four lease timeouts, the tiles held back all along
    while time.monotonic() < deadline:
        assert b.status(job.id).status == "queued"
        held = _lease(gated, job.id)
        assert held is not None and held.holder == first.holder
        seen.add(held.at)
        time.sleep(0.02)
    assert not b.invoker.is_active(job.id)
    assert len(seen) >= 4  # renewed every 0.06 s
    gated.gate.set()
    _wait(lambda: _done(b, job.id), what="the job's end")


def test_a_resubmission_to_another_replica_leaves_a_job_with_a_live_lease_to_its_holder(tmp_path, replica_services):
    gated = GatedStore(tmp_path / "store")
    a = replica_services(gated)
    b = replica_services(LocalStore(tmp_path / "store"))
    job = a.submit(parse_spec(SMALL))[0].job
    try:
        b.submit(parse_spec(SMALL))
        assert a.invoker.is_active(job.id) and not b.invoker.is_active(job.id)
    finally:
        gated.gate.set()


def test_a_closed_service_releases_its_leases_and_another_replica_carries_on_at_once(tmp_path, replica_services):
    gated = GatedStore(tmp_path / "store")
    a = replica_services(gated, lease_timeout=600)
    b = replica_services(LocalStore(tmp_path / "store"), lease_timeout=600)
    job = a.submit(parse_spec(SMALL))[0].job
    a.close()
    assert _lease(gated, job.id) is None
    b.status(job.id)
    assert b.invoker.is_active(job.id)
    gated.gate.set()
    _wait(lambda: _done(b, job.id), what="the job's end")


def test_a_job_whose_lease_expired_is_carried_on_by_a_poll_that_renders_only_its_missing_tiles(
        tmp_path, replica_services):
    store = CountingStore(tmp_path / "store")
    spec = parse_spec(SMALL)
    job = jobs.create(store, spec)[0]
    for index in (0, 2, 3):  # what the replica that died had finished
        tasks.render_tile(job.tile_task(index), store)
    body = {"by": "1@another-host~run1", "holder": "gone", "at": time.time() - 31}
    store.put(jobs.dispatch_key(job.id), json.dumps(body).encode())
    b = replica_services(store, lease_timeout=30)
    store.tile_puts.clear()
    b.status(job.id)
    _wait(lambda: _done(b, job.id), what="the job's end")
    assert sorted(store.tile_puts) == sorted(jobs.tile_key(job.pixels_hash, i)
                                             for i in range(tile_count(spec)) if i not in (0, 2, 3))
    _wait(lambda: _lease(store, job.id) is None, what="the lease's release")  # once the job has left its hands


def test_a_job_being_assembled_for_a_gone_replica_is_left_to_its_assembler(ready_job, local_store, replica_services):
    claim = {"by": "1@another-host~run1", "holder": "assembler", "at": time.time()}
    local_store.put(jobs.claim_key(ready_job.id), json.dumps(claim).encode())
    b = replica_services(local_store)
    assert b.status(ready_job.id).status == "assembling"
    assert not b.invoker.is_active(ready_job.id) and _lease(local_store, ready_job.id) is None


# --- api replicas as processes --------------------------------------------------------------------

def _submit(replicas, replica, spec: dict[str, Any]) -> str:
    resp = requests.post(replica.url + "/v1/renders", json=spec, timeout=15)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def _tiles_stored(replicas, spec: dict[str, Any]) -> int:
    return len(replicas.store.list(jobs.tiles_prefix(parse_spec(spec).pixels_hash())))


def _finish_through(replicas, replica, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = replicas.status(replica, job_id)
        assert body["status"] != "failed", body
        if body["status"] == "done":
            return body
        assert time.monotonic() < deadline, f"{body}\n{replicas.log_tail()}"
        time.sleep(0.1)


def _result(replica, job_id: str) -> bytes:
    resp = requests.get(f"{replica.url}/v1/renders/{job_id}/result", timeout=15)
    assert resp.status_code == 200, resp.text[:300]
    return resp.content


@pytest.mark.slow
def test_a_live_lease_held_in_another_pid_namespace_is_respected_while_renewed(replicas):
    """The judge runs in a pid namespace of its own: the holder's pid does not exist there, and the
    holder is alive. Judged by its pid, it would be taken for dead and its job dispatched twice."""
    # A lease of 5 s (renewed every second) tolerates a renewal seconds late on a loaded machine.
    a = replicas.start("api-a", lease_timeout=5)
    b = replicas.start("api-b", lease_timeout=5, own_pid_namespace=True)
    # Inside the main cardioid no pixel escapes: 24 tiles of ~2 s of a core each, on 2 render workers.
    spec = {"fractal": "mandelbrot", "center": [-0.3, 0.0], "scale": 0.5, "width": 768, "height": 512,
            "tile_size": 128, "max_iter": 100_000, "format": "msgpack"}
    job_id = _submit(replicas, a, spec)
    first = _lease(replicas.store, job_id)
    assert first is not None and first.by.split("~")[0].endswith("@" + orphans.HOST)
    seen = set()
    deadline = time.monotonic() + 2 * 5  # two lease timeouts
    while time.monotonic() < deadline:
        assert replicas.status(b, job_id)["status"] != "done", "the job ended too soon to show anything"
        held = _lease(replicas.store, job_id)
        assert held is not None and (held.by, held.holder) == (first.by, first.holder), held
        seen.add(held.at)
        time.sleep(0.2)
    assert len(seen) >= 3  # renewed every second
    _finish_through(replicas, a, job_id, timeout=120)
    puts = replicas.s3_puts()
    tile_keys = replicas.store.list(jobs.tiles_prefix(parse_spec(spec).pixels_hash()))
    assert {key: puts[key] for key in tile_keys} == {key: 1 for key in tile_keys}  # dispatched once


@pytest.mark.slow
def test_a_job_whose_api_was_killed_is_finished_by_another_replica_after_a_status_poll(replicas, tmp_path):
    a = replicas.start("api-a", lease_timeout=3)
    b = replicas.start("api-b", lease_timeout=3, own_pid_namespace=True)  # cannot see a's pid die
    spec = {"fractal": "mandelbrot", "center": [-0.6, 0.0], "scale": 1.6, "width": 384, "height": 384,
            "tile_size": 128, "max_iter": 30_000, "format": "png"}
    reference = cli_render(spec, tmp_path / "clean.png")
    job_id = _submit(replicas, a, spec)
    _wait(lambda: _tiles_stored(replicas, spec) >= 1, timeout=60, what="a first tile")
    os.killpg(a.proc.pid, signal.SIGKILL)  # the api's master and worker at once: no drain, no release
    assert gone(a.proc.pid)
    assert not replicas.store.exists(jobs.result_key(job_id, "png"))
    assert _lease(replicas.store, job_id) is not None  # left behind by the dead api
    _finish_through(replicas, b, job_id, timeout=120)
    assert _result(b, job_id) == reference
    _wait(lambda: _lease(replicas.store, job_id) is None, what="b's release of the lease")  # just after the result


@pytest.mark.slow
def test_a_sigterm_api_releases_its_leases_and_another_replica_carries_on_at_once(replicas, tmp_path):
    lease_timeout = 120  # b could only take over after this, but for the release
    a = replicas.start("api-a", lease_timeout=lease_timeout)
    b = replicas.start("api-b", lease_timeout=lease_timeout, own_pid_namespace=True)
    spec = {"fractal": "mandelbrot", "center": [-0.6, 0.05], "scale": 1.6, "width": 384, "height": 384,
            "tile_size": 128, "max_iter": 30_000, "format": "png"}
    reference = cli_render(spec, tmp_path / "clean.png")
    job_id = _submit(replicas, a, spec)
    _wait(lambda: _tiles_stored(replicas, spec) >= 1, timeout=60, what="a first tile")
    held_by_a = _lease(replicas.store, job_id)
    assert held_by_a is not None
    stopped = time.monotonic()
    os.kill(a.proc.pid, signal.SIGTERM)  # gunicorn's master: a scale-down, docker stop, a new revision
    _finish_through(replicas, b, job_id, timeout=lease_timeout / 3)
    assert time.monotonic() - stopped < lease_timeout / 3
    assert _result(b, job_id) == reference
    _wait(lambda: _lease(replicas.store, job_id) is None, what="b's release of the lease")  # just after the result
    assert a.proc.wait(timeout=30) == 0  # a stopped cleanly
    assert "could not close the service" not in (replicas.logs / "api-a.log").read_text()
