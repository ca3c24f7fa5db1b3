"""The render_tile and assemble function apps over Flask's test client (no server, no network).

What a caller of a function relies on: the tile lands in the store and a repeat is answered
from it, bad tasks get docs/api.md's JSON error and write nothing, an unreachable store is a
retryable 503, a bug is a 500 that tells nothing of the bug, and assembly writes one result
however often and however concurrently it is asked.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from fractally import jobs
from fractally.jobs import tasks
from fractally.picture.codec import decode_tile
from fractally.config import Settings
from fractally.picture.spec import parse_spec
from fractally.store import LocalStore, ObjectStore
from fractally.picture.tiling import render_tile_arrays, tile
from functions.assemble.app import create_app as create_assemble
from functions.render_tile.app import create_app as create_render_tile

SPEC = {"c": [-0.8, 0.156], "width": 40, "height": 30, "tile_size": 16, "max_iter": 60}  # 3 x 2 tiles


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(store_url=str(tmp_path / "store"))


@pytest.fixture
def store(settings: Settings) -> LocalStore:
    """The same folder the apps use, opened separately (as another process would)."""
    return LocalStore(settings.store_url)


@pytest.fixture
def job(store: ObjectStore) -> jobs.Job:
    return jobs.create(store, parse_spec(SPEC))[0]


@pytest.fixture
def render_client(settings: Settings):
    return create_render_tile(settings).test_client()


@pytest.fixture
def assemble_client(settings: Settings):
    return create_assemble(settings).test_client()


def _render_all(client, job: jobs.Job) -> None:
    for index in range(job.tiles_total):
        assert client.post("/", json=job.tile_task(index)).status_code == 200


def _stat(store: LocalStore, key: str) -> tuple[int, int]:
    st = (store.root / key).stat()
    return st.st_ino, st.st_mtime_ns


def _assert_error_shape(resp, status_low: int = 400, status_high: int = 499) -> dict:
    assert status_low <= resp.status_code <= status_high, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert set(error) == {"code", "message", "field"} and error["message"]
    return error


# -- render_tile ------------------------------------------------------------------------------


def test_render_tile_writes_the_tile_it_was_asked_for(render_client, store, job):
    resp = render_client.post("/", json=job.tile_task(4))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["cached"] is False and body["tile"] == 4 and body["seconds"]["total"] > 0
    assert body["key"] == jobs.tile_key(job.pixels_hash, 4)
    stored = decode_tile(store.get(body["key"]))
    counts, _ = render_tile_arrays(job.spec, tile(job.spec, 4))
    assert np.array_equal(stored.counts, counts)


def test_repeated_tile_is_answered_cached_and_not_rewritten(render_client, store, job):
    key = render_client.post("/", json=job.tile_task(1)).get_json()["key"]
    before = _stat(store, key)
    again = render_client.post("/", json=job.tile_task(1))
    assert again.status_code == 200 and again.get_json()["cached"] is True
    assert _stat(store, key) == before


@pytest.mark.parametrize("body, field", [
    (b"{not json", None),
    (b"", None),
    (b"[1, 2]", None),
    (b"[" * 40000 + b"]" * 40000, None),
    (b'{"job": "00000000000000000000000000000000", "spec": {"c": [0, 0]}, "tile": 0}', "spec"),
], ids=["not json", "empty", "not an object", "nested too deeply", "spec of another job"])
def test_bad_tile_task_is_a_4xx_json_error_and_writes_nothing(render_client, store, job, body, field):
    before = store.list()
    error = _assert_error_shape(render_client.post("/", data=body, content_type="application/json"))
    assert error["field"] == field
    assert store.list() == before


def test_tile_index_past_the_last_is_400_naming_tile(render_client, store, job):
    before = store.list()
    error = _assert_error_shape(render_client.post("/", json={**job.tile_task(0), "tile": job.tiles_total}), 400, 400)
    assert error["field"] == "tile"
    assert store.list() == before


def test_tile_task_with_a_spec_that_fails_validation_names_the_field(render_client, store, job):
    task = job.tile_task(0)
    task["spec"] = {**task["spec"], "max_iter": 0}
    error = _assert_error_shape(render_client.post("/", json=task))
    assert error["field"] == "max_iter"


def test_unreachable_store_is_a_retryable_503(job):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(store_url="s3://nowhere/x", s3_endpoint=f"http://127.0.0.1:{port}",
                        s3_access_key="k", s3_secret_key="s")
    resp = create_render_tile(settings).test_client().post("/", json=job.tile_task(0))
    error = _assert_error_shape(resp, 503, 503)
    assert error["code"] == "store_unavailable" and resp.headers["Retry-After"]


def test_unexpected_error_is_a_500_that_hides_its_text(render_client, job, monkeypatch):
    def broken(task, store):
        raise RuntimeError("secret /srv/internal/path")

    monkeypatch.setattr(tasks, "render_tile", broken)
    resp = render_client.post("/", json=job.tile_task(0))
    error = _assert_error_shape(resp, 500, 500)
    assert "secret" not in resp.get_data(as_text=True) and error["code"] == "internal_error"


@pytest.mark.parametrize("make", [create_render_tile, create_assemble], ids=["render_tile", "assemble"])
def test_healthz_answers_200(make, settings):
    resp = make(settings).test_client().get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


# -- assemble ---------------------------------------------------------------------------------


def test_assemble_of_an_incomplete_job_writes_no_result(render_client, assemble_client, store, job):
    render_client.post("/", json=job.tile_task(0))
    body = assemble_client.post("/", json={"job": job.id}).get_json()
    assert body["status"] == "incomplete" and body["missing"] == job.tiles_total - 1
    assert not store.exists(job.result_key)


def test_assemble_twice_gives_one_result(render_client, assemble_client, store, job):
    _render_all(render_client, job)
    first = assemble_client.post("/", json={"job": job.id}).get_json()
    stamp = _stat(store, job.result_key)
    second = assemble_client.post("/", json={"job": job.id}).get_json()
    assert (first["status"], first["written"]) == ("done", True)
    assert (second["status"], second["written"]) == ("done", False)
    assert _stat(store, job.result_key) == stamp


def test_concurrent_assembles_write_the_result_once(render_client, settings, store, job, monkeypatch):
    _render_all(render_client, job)
    writes: list[str] = []
    real_put_file = LocalStore.put_file

    def counting_put_file(self, key, *args, **kwargs):
        written = real_put_file(self, key, *args, **kwargs)
        if written:
            writes.append(key)
        return written

    monkeypatch.setattr(LocalStore, "put_file", counting_put_file)
    app = create_assemble(settings)
    barrier = threading.Barrier(4)
    answers: list[dict] = []

    def call() -> None:
        client = app.test_client()
        barrier.wait(timeout=10)
        resp = client.post("/", json={"job": job.id})
        answers.append({"code": resp.status_code, **resp.get_json()})

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(answers) == 4 and all(a["code"] == 200 for a in answers)
    assert writes == [job.result_key]
    assert sum(a.get("written") is True for a in answers) == 1


def test_assemble_of_an_unknown_job_is_404(assemble_client):
    error = _assert_error_shape(assemble_client.post("/", json={"job": "0" * 32}), 404, 404)
    assert error["code"] == "not_found"


@pytest.mark.parametrize("body", [{}, {"job": 7}, [1]], ids=["no job", "number", "list"])
def test_assemble_without_a_job_id_is_400_naming_job(assemble_client, body):
    error = _assert_error_shape(assemble_client.post("/", json=body), 400, 400)
    assert error["field"] == "job"


@pytest.mark.parametrize("fmt", ["png", "msgpack"])
def test_inprocess_job_assembled_while_rendering_equals_a_local_render(settings, store, fmt):
    """The in-process invoker assembles band by band as tiles land, some handed over in memory and
    some (stored before the job started) read back: the result is the local render's, byte for byte."""
    import io
    import time
    from concurrent.futures import ThreadPoolExecutor

    from fractally.picture.compose import render_bands, write_image
    from fractally.jobs.invoke import InProcessInvoker
    from fractally.jobs.service import Service

    spec = parse_spec({**SPEC, "width": 100, "height": 70, "max_iter": 300, "format": fmt})  # 7 x 5 tiles
    job = jobs.create(store, spec)[0]
    for index in (0, 8, 20):
        tasks.render_tile(job.tile_task(index), store)
    service = Service(settings, store, InProcessInvoker(store, 2), ThreadPoolExecutor(1))
    try:
        status, _ = service.submit(spec)
        assert status.status in ("queued", "running", "assembling") and status.tiles_done >= 3
        deadline = time.monotonic() + 30
        while service.invoker.is_active(job.id):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert service.status(job.id).status == "done"
    finally:
        service.close()
    expected = io.BytesIO()
    with ThreadPoolExecutor(2) as pool:
        write_image(spec, render_bands(spec, pool), expected, pool)
    assert store.get(job.result_key) == expected.getvalue()
    assert not store.exists(jobs.claim_key(job.id))
    assert len(store.list(jobs.tiles_prefix(job.pixels_hash))) == job.tiles_total
