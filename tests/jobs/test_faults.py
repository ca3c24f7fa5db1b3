"""Faults: processes killed mid-work, the object store restarted mid-job, work delivered twice.

Every case runs against the multi-process stack (``fractally.ops.stack.Stack``: render_tile with two
gunicorn workers, assemble, the api with the HTTP invoker, a moto S3 server) and ends in the
byte-identical image of a clean run: ``fractally render`` of the same spec on this machine
(job results and CLI output are the same bytes: one composer, one encoder).

The S3 test server (moto) keeps objects in memory, so a restart would lose them where MinIO or S3
would not: the restart test copies them out before the stop and back into the new server before
the functions can see it (``Faulty.restart_s3``) — it plays the disk. (moto's request recorder
could replay state, but its threaded server interleaves lines of the recording.) The queue invoker's "worker killed mid-tile" case
lives with the queue (``tests/jobs/test_queue.py``).
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from fractally import jobs
from fractally.jobs import tasks
from fractally.cli import main as fractally_cli
from fractally.picture.codec import encode_tile
from fractally.config import Settings
from fractally.errors import StoreUnavailable
from fractally.jobs.invoke import HttpInvoker, InProcessInvoker
from fractally.jobs.service import Service
from fractally.picture.spec import parse_spec
from fractally.ops.stack import Child, Stack
from fractally.store import LocalStore
from fractally.picture.tiling import render_tile_arrays, tile
from tests.support.e2e import STARTUP_TIMEOUT, hermetic_env

pytestmark = pytest.mark.slow

HTTP = 15.0  # seconds for one request
JOB_TIMEOUT = 90.0
LEAKS = ("Traceback", "/work/", "site-packages", '.py"')


# --- looking at processes -----------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def workers_of(master: int) -> list[int]:
    """The gunicorn workers of ``master``: its child processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and int(fields[1]) == master:
            found.append(int(entry.name))
    return sorted(found)


def cpu_ticks(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[11]) + int(fields[12]) if fields else -1


def wait_workers(master: int, count: int, timeout: float = 60.0) -> list[int]:
    """The workers of ``master`` once there are ``count`` (gunicorn boots and respawns them one by one)."""
    deadline = time.monotonic() + timeout
    while len(found := workers_of(master)) != count:
        assert time.monotonic() < deadline, f"{master} has workers {found}, not {count}"
        time.sleep(0.05)
    return found


def busy_worker(master: int, timeout: float, window: float = 0.3, min_ticks: int = 3) -> int:
    """A worker of ``master`` that is burning CPU right now (mid-render or mid-assemble)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = {pid: cpu_ticks(pid) for pid in workers_of(master)}
        time.sleep(window)
        for pid, ticks in before.items():
            if ticks >= 0 and cpu_ticks(pid) - ticks >= min_ticks:
                return pid
    raise AssertionError(f"no worker of {master} got busy within {timeout} s")


def gone(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` no longer exists (a killed worker is reaped by its master)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _stat(pid) is None or _stat(pid)[0] == "Z":
            return True
        time.sleep(0.05)
    return False


# --- the stack ----------------------------------------------------------------------------------

class Faulty:
    """A running stack, and what the tests do to it."""

    def __init__(self, stack: Stack, logs: Path) -> None:
        self.stack = stack
        self.logs = logs
        self.store = stack.store()
        self.api = stack.urls.api
        self.leaks: list[str] = []  # every answer any test got is searched for internals
        self.session = self.new_session()

    def new_session(self) -> requests.Session:
        """A client that, like a browser, resends a GET whose idle keep-alive connection the server had
        just closed (the S3 restart pauses the api past gunicorn's 2 s keep-alive); never a POST."""
        session = requests.Session()
        retry = Retry(total=2, connect=2, read=2, status=0, allowed_methods={"GET"}, backoff_factor=0.1,
                      respect_retry_after_header=False, raise_on_status=False)  # a 503 is an answer
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.hooks["response"].append(self._look_for_leaks)
        return session

    def _look_for_leaks(self, resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        if not resp.headers.get("Content-Type", "").startswith(("image/", "application/msgpack")):
            self.leaks += [f"{resp.url}: {word}" for word in LEAKS if word in resp.text]

    def child(self, name: str) -> Child:
        return next(c for c in self.stack.children if c.name == name)

    def submit(self, spec: dict[str, Any]) -> requests.Response:
        return self.session.post(self.api + "/v1/renders", json=spec, timeout=HTTP)

    def status(self, job_id: str) -> requests.Response:
        return self.session.get(f"{self.api}/v1/renders/{job_id}", timeout=HTTP)

    def wait_done(self, job_id: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            resp = self.status(job_id)
            if resp.status_code == 200:
                body = resp.json()
                if body["status"] == "done" and not self.store.exists(jobs.claim_key(job_id)):
                    return body
                assert body["status"] != "failed", body
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {body}\n{self.log_tail()}")

    def result(self, job_id: str) -> bytes:
        resp = self.session.get(f"{self.api}/v1/renders/{job_id}/result", timeout=HTTP)  # follows the 302
        assert resp.status_code == 200, resp.text[:300]
        return resp.content

    def s3_puts(self) -> Counter[str]:
        """How often each key was PUT, from the S3 server's request log (the stack logs each request)."""
        text = "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("s3*.log")))
        pattern = re.compile(rf'"PUT /{re.escape(self.store.bucket)}/{re.escape(self.store.prefix)}(\S+?)(?:\?\S*)? HTTP/')
        return Counter(pattern.findall(text))

    def log_tail(self, lines: int = 25) -> str:
        out = []
        for name in ("api", "render_tile", "assemble"):
            path = self.logs / f"{name}.log"
            if path.exists():
                out.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    def _pause(self, names: tuple[str, ...], sig: int) -> None:
        for name in names:
            os.killpg(self.child(name).proc.pid, sig)

    def restart_s3(self, down: Callable[[], None]) -> list[str]:
        """Stop the S3 server (SIGTERM: the process and its memory are gone), call ``down`` while it
        is away, then start it again on the same port with the objects it held; the keys it held (as the
        store names them, without its prefix).

        moto keeps objects in memory only, where MinIO or S3 keep them on disk. So the test plays the
        disk: the functions are paused (SIGSTOP) for a moment while every object is copied out, and
        again while they are put back into the new server; to them the store is simply away, and it
        comes back with exactly what it had acknowledged, as a real one would.
        """
        functions = ("api", "render_tile", "assemble")
        old = self.child("s3")
        client, bucket = self.store.client, self.store.bucket

        def listing() -> dict[str, tuple[str, Any]]:
            return {obj["Key"]: (obj["ETag"], obj["LastModified"])
                    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                    for obj in page.get("Contents", ())}

        self._pause(functions, signal.SIGSTOP)
        try:
            before, deadline = listing(), time.monotonic() + 20
            while True:  # requests the server had already taken are answered: it has gone quiet
                time.sleep(0.3)
                now = listing()
                if now == before:
                    break
                assert time.monotonic() < deadline, "the S3 server does not settle"
                before = now
            disk = {}
            for key in now:
                got = client.get_object(Bucket=bucket, Key=key)
                disk[key] = (got["Body"].read(), got["ContentType"])
            assert listing() == now
            old.stop()
            assert not old.alive()
        finally:
            self._pause(functions, signal.SIGCONT)
        down()
        self._pause(functions, signal.SIGSTOP)
        try:
            new = Child("s3", old.argv, old.env, old.url, health_path=old.health_path,
                        log_path=self.logs / "s3-restarted.log", die_with_parent=True, quiet=True).start()
            self.stack.children[self.stack.children.index(old)] = new
            new.wait_healthy(time.monotonic() + 30)
            fresh = self.stack.store()
            fresh.create_bucket()
            for key, (body, content_type) in disk.items():
                fresh.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        finally:
            self._pause(functions, signal.SIGCONT)
        prefix = self.store.prefix
        return sorted(key[len(prefix):] for key in disk if key.startswith(prefix))


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    logs = tmp_path_factory.mktemp("faults")
    env = hermetic_env()
    # Retries cover a store that is away for ~20 s (the default 4 cover ~8 s).
    stack = Stack(render_workers=2, log_dir=logs, base_env=env, startup_timeout=STARTUP_TIMEOUT,
                  env={"FRACTALLY_HTTP_RETRIES": "8"})
    stack.start()
    try:
        yield Faulty(stack, logs)
    finally:
        stack.stop(timeout=15)


def cli_render(spec: dict[str, Any], out: Path) -> bytes:
    """The clean run: ``fractally render`` of ``spec`` on this machine."""
    argv = ["render", "-q", "--width", str(spec["width"]), "--height", str(spec["height"]),
            "--tile-size", str(spec["tile_size"]), "--max-iter", str(spec["max_iter"]), "-o", str(out)]
    if spec.get("fractal") == "mandelbrot":
        argv += ["--fractal", "mandelbrot"]
    else:
        argv.append(f"--c={spec['c'][0]},{spec['c'][1]}")
    if "center" in spec:
        argv.append(f"--center={spec['center'][0]},{spec['center'][1]}")
    if "scale" in spec:
        argv += ["--scale", repr(spec["scale"])]
    assert fractally_cli(argv) == 0
    return out.read_bytes()


# --- the cases ----------------------------------------------------------------------------------

def test_render_tile_worker_killed_mid_tile_job_still_finishes_identically(faulty, tmp_path):
    # Inside the main cardioid most pixels never escape: each 128 px tile is ~a second of one core.
    spec = {"fractal": "mandelbrot", "center": [-0.6, 0.0], "scale": 1.6, "width": 256, "height": 256,
            "tile_size": 128, "max_iter": 50_000, "format": "png"}
    reference = cli_render(spec, tmp_path / "clean.png")
    master = faulty.child("render_tile").proc.pid
    wait_workers(master, 2)
    resp = faulty.submit(spec)
    assert resp.status_code == 202, resp.text
    victim = busy_worker(master, timeout=30)
    os.kill(victim, signal.SIGKILL)
    assert gone(victim)
    body = faulty.wait_done(resp.json()["id"])
    assert faulty.result(body["id"]) == reference
    assert victim not in wait_workers(master, 2)  # gunicorn replaced the killed worker
    assert f"Worker (pid:{victim}) was sent SIGKILL" in (faulty.logs / "render_tile.log").read_text()


def test_assemble_killed_mid_write_never_shows_a_partial_result_and_the_retry_finishes(faulty, tmp_path):
    # 3072² PNG from 144 tiles: a couple of seconds of assembling (read, colour, deflate, upload).
    spec = {"c": [-0.7269, 0.1889], "width": 3072, "height": 3072, "tile_size": 256, "max_iter": 200,
            "format": "png"}
    reference = cli_render(spec, tmp_path / "clean.png")
    # The same picture in other colours first: its tiles are stored, so the job is only an assembly, from
    # the tiles, through the assembler's file (no band of it was encoded by render_tile: fractally.jobs.pieces).
    recoloured = faulty.submit({**spec, "colormap": "fire"})
    assert recoloured.status_code == 202, recoloured.text
    faulty.wait_done(recoloured.json()["id"])
    job_id = parse_spec(spec).content_hash()
    key, claim = jobs.result_key(job_id, "png"), jobs.claim_key(job_id)
    seen: list[bytes] = []
    stop = threading.Event()

    def watch() -> None:  # the first time the result key shows anything, it is the whole image
        while not stop.is_set():
            if faulty.store.exists(key):
                seen.append(faulty.store.get(key))
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        master = faulty.child("assemble").proc.pid
        resp = faulty.submit(spec)
        assert resp.status_code == 202 and resp.json()["id"] == job_id
        deadline = time.monotonic() + 60
        while not faulty.store.exists(claim):  # the assembler has the job: it is composing now
            assert time.monotonic() < deadline, faulty.log_tail()
            time.sleep(0.02)
        (victim,) = workers_of(master)  # the one assemble worker, holding the claim
        def half_written() -> list[Path]:  # its result file, being written
            return list(Path(tempfile.gettempdir()).glob(f"{tasks.RESULT_TEMP}{victim}@*"))

        while not half_written():
            assert time.monotonic() < deadline, faulty.log_tail()
            time.sleep(0.01)
        os.kill(victim, signal.SIGKILL)
        assert gone(victim)
        assert faulty.store.exists(claim) and not seen  # killed holding the job, before its result was out
        faulty.wait_done(job_id)  # the HTTP invoker's retry reaches the respawned worker
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert not half_written()  # the worker that took over removed it
    assert len(seen) == 1 and seen[0] == reference
    assert faulty.result(job_id) == reference
    assert victim not in wait_workers(master, 1)
    for stored in faulty.store.list(jobs.tiles_prefix(parse_spec(spec).pixels_hash())) + \
            faulty.store.list(jobs.job_prefix(job_id)):
        faulty.store.delete(stored)  # 80 MB the S3 test server need not hold for the other cases


def test_same_tile_delivered_twice_at_once_gives_one_object_of_the_same_bytes(faulty):
    spec = parse_spec({"c": [0.285, 0.01], "width": 256, "height": 128, "tile_size": 128, "max_iter": 3000})
    task = {"job": spec.content_hash(), "spec": spec.normalized(), "tile": 1}
    expected = encode_tile(*render_tile_arrays(spec, tile(spec, 1)), spec.max_iter)
    barrier = threading.Barrier(2)

    def deliver(_: int) -> dict[str, Any]:
        with faulty.new_session() as session:
            barrier.wait()
            resp = session.post(faulty.stack.urls.render_tile + "/", json=task, timeout=60)
        assert resp.status_code == 200, resp.text
        return resp.json()

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(deliver, range(2)))
    assert answers[0]["key"] == answers[1]["key"] == jobs.tile_key(spec.pixels_hash(), 1)
    assert faulty.store.list(jobs.tiles_prefix(spec.pixels_hash())) == [answers[0]["key"]]
    assert faulty.store.get(answers[0]["key"]) == expected


def test_identical_jobs_submitted_at_once_are_one_job_rendering_each_tile_once(faulty, tmp_path):
    spec = {"c": [-0.4, 0.6], "width": 384, "height": 256, "tile_size": 128, "max_iter": 2000, "format": "png"}
    threads = 8
    barrier = threading.Barrier(threads)

    def submit(_: int) -> tuple[int, str]:
        with faulty.new_session() as session:
            barrier.wait()
            resp = session.post(faulty.api + "/v1/renders", json=spec, timeout=HTTP)
        return resp.status_code, resp.json()["id"]

    with ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(submit, range(threads)))
    assert {status for status, _ in answers} == {202}
    ids = {job_id for _, job_id in answers}
    assert len(ids) == 1
    job_id = ids.pop()
    faulty.wait_done(job_id)
    prefix = jobs.tiles_prefix(parse_spec(spec).pixels_hash())
    tile_keys = faulty.store.list(prefix)
    assert len(tile_keys) == 6
    puts = faulty.s3_puts()
    assert {key: puts[key] for key in tile_keys} == {key: 1 for key in tile_keys}  # each tile written once
    assert puts[jobs.result_key(job_id, "png")] == 1
    assert faulty.result(job_id) == cli_render(spec, tmp_path / "clean.png")


def test_s3_restarted_mid_job_answers_503_meanwhile_and_the_job_finishes_after_it_returns(faulty, tmp_path):
    spec = {"fractal": "mandelbrot", "center": [-0.55, 0.05], "scale": 1.8, "width": 384, "height": 256,
            "tile_size": 128, "max_iter": 50_000, "format": "msgpack"}
    reference = cli_render(spec, tmp_path / "clean.msgpack")
    resp = faulty.submit(spec)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    deadline = time.monotonic() + JOB_TIMEOUT
    while faulty.status(job_id).json()["progress"]["tiles_done"] == 0:
        assert time.monotonic() < deadline, faulty.log_tail()
        time.sleep(0.05)
    answers: list[requests.Response] = []

    def while_down() -> None:
        answers.append(faulty.status(job_id))
        answers.append(faulty.submit({**spec, "max_iter": 100}))
        time.sleep(2.0)  # how long the store stays away: several of the HTTP invoker's retries

    held = faulty.restart_s3(while_down)
    # What the store held when it went away (read with the functions stopped): some tiles, not all.
    stored = [key for key in held if key.startswith(jobs.tiles_prefix(parse_spec(spec).pixels_hash()))]
    assert 0 < len(stored) < 6
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "1"
        assert answer.json()["error"] == {"code": "store_unavailable", "field": None,
                                          "message": "the object store cannot be reached; try again later"}
        assert not [word for word in LEAKS if word in answer.text]
    body = faulty.wait_done(job_id)
    assert body["progress"] == {"tiles_done": 6, "tiles_total": 6}
    assert faulty.result(job_id) == reference


def test_no_answer_during_a_store_outage_shows_internals(faulty):
    """Every kind of request, sent while the store is away and after it came back, is answered without a
    trace, path or source file (the session's hook reads every body this test gets)."""
    faulty.leaks.clear()
    spec = {"c": [-0.4, 0.6], "width": 96, "height": 64, "tile_size": 32, "max_iter": 500, "format": "png"}
    job_id = faulty.submit(spec).json()["id"]
    sent: list[requests.Response] = []

    def while_down() -> None:
        for path in (f"/v1/renders/{job_id}", f"/v1/renders/{job_id}/result", f"/v1/renders/{'0' * 32}",
                     "/v1/render.png?c=0.3,0.5&width=64&height=64", "/readyz"):
            sent.append(faulty.session.get(faulty.api + path, timeout=HTTP))
        sent.append(faulty.submit({**spec, "max_iter": 501}))

    faulty.restart_s3(while_down)
    assert 503 in {answer.status_code for answer in sent}  # the store really was away for them
    faulty.wait_done(job_id)
    faulty.result(job_id)
    faulty.session.get(f"{faulty.api}/v1/renders/{job_id}", timeout=HTTP)
    assert faulty.leaks == []


class FlakyStore(LocalStore):
    """A folder store whose tile and failure-record writes fail while ``down`` (the rest works)."""

    down = False

    def _check(self, key: str) -> None:
        if self.down and (key.startswith("tiles/") or key.endswith("/failed.json")):
            raise StoreUnavailable("the object store cannot be reached; try again later")

    def exists(self, key: str) -> bool:
        self._check(key)
        return super().exists(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._check(key)
        super().put(key, data, content_type)


def test_job_whose_failure_cannot_be_recorded_is_finished_by_a_resubmission(tmp_path):
    """Tiles fail because the store is away, and so does writing the failure: a resubmission still runs it."""
    store = FlakyStore(tmp_path / "store")
    service = Service(Settings(store_url=str(store.root), workers=1), store, InProcessInvoker(store, 1),
                      ThreadPoolExecutor(1))
    try:
        spec = parse_spec({"c": [-0.8, 0.156], "width": 32, "height": 32, "tile_size": 16, "max_iter": 50})
        store.down = True
        status, _ = service.submit(spec)
        deadline = time.monotonic() + 20
        while service.invoker.is_active(status.job.id):  # every tile failed; the invoker let go of the job
            assert time.monotonic() < deadline
            time.sleep(0.02)
        store.down = False
        assert service.status(status.job.id).status == "queued"  # no failure record could be written
        service.submit(spec)
        deadline = time.monotonic() + 20
        while service.status(status.job.id).status != "done":
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        service.close()


def test_a_function_that_keeps_failing_is_reported_with_its_own_words(tmp_path, function_stub):
    """The failure text a job gets names the function's reason (here: the store), not just a status."""
    said = {"code": "store_unavailable", "field": None, "message": "the object store cannot be reached; try again later"}
    url = function_stub(status=503, body={"error": said}).url
    invoker = HttpInvoker(LocalStore(tmp_path / "store"),
                          Settings(render_tile_url=url, assemble_url=url, http_retries=1, invoker="http"))
    try:
        with pytest.raises(RuntimeError) as raised:
            invoker.call(url, {"job": "0" * 32})
    finally:
        invoker.close()
    assert str(raised.value) == ("the function did not answer successfully "
                                 "(HTTP 503: the object store cannot be reached; try again later)")
