"""Fixtures every test module may use; the larger families live in the plugins listed below."""

from __future__ import annotations

import gc
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from fractally import jobs
from fractally.jobs import tasks
from fractally.store import fileio
from fractally.jobs.invoke import InProcessInvoker
from fractally.picture.spec import parse_spec
from fractally.store import LocalStore
from fractally.store.base import DEFAULT_CONTENT_TYPE
from fractally.picture.tiling import tile_count

pytest_plugins = ["tests.conftest_store", "tests.conftest_api", "tests.conftest_e2e", "tests.conftest_queue",
                  "tests.conftest_containers",
                  "tests.conftest_replicas",
                  "tests.conftest_browser"]

#: The only tests that may skip when ``CI=true``: test id -> why skipping there is right. Any other
#: skip fails a CI run (``pytest_sessionfinish``): CI installs everything the suite needs (Chromium,
#: Docker, nats-server, moto), so a skip there means a check silently did not run.
CI_SKIP_ALLOWED: dict[str, str] = {
    "tests/test_kernel.py::test_no_fused_multiply_add_in_the_machine_code":
        "under NUMBA_DISABLE_JIT=1 (make test-nojit) there is no machine code to read; make test runs it compiled",
}


def in_ci() -> bool:
    """True when the environment says this is a CI run (``CI=true``, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


#: Skips seen under CI that are not allowed, "test id: reason" (this process's; xdist's controller gets
#: every worker's reports, so its list is the run's).
_FORBIDDEN_SKIPS: list[str] = []


def _note_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and in_ci() and not hasattr(report, "wasxfail") and report.nodeid not in CI_SKIP_ALLOWED:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _FORBIDDEN_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Under CI, note every skipped test that is not on ``CI_SKIP_ALLOWED``."""
    _note_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """... and every module skipped as a whole while collecting."""
    _note_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A CI run with a skip outside the allow-list fails, even if every test that ran passed."""
    if _FORBIDDEN_SKIPS and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if skipped := _FORBIDDEN_SKIPS:
        terminalreporter.section("skipped under CI=true (not on tests/conftest.py's CI_SKIP_ALLOWED)", red=True)
        for line in skipped:
            terminalreporter.line(line, red=True)

#: ``small_write_pieces``' piece size: small enough that every test image spans many pieces.
SMALL_PIECE = 1000


@pytest.fixture
def small_write_pieces(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Large writes cut into ``SMALL_PIECE``-byte pieces (``fractally.store.fileio``), and the size of every
    ``os.write`` and ``os.pwrite`` that ``fileio`` makes, recorded (the bytes still go to the file)."""
    monkeypatch.setattr(fileio, "WRITE_PIECE", SMALL_PIECE)
    sizes: list[int] = []

    def recorded(call):
        def write(fd, data, *offset):
            sizes.append(len(memoryview(data).cast("B")))
            return call(fd, data, *offset)
        return write

    monkeypatch.setattr(fileio, "os", SimpleNamespace(write=recorded(os.write), pwrite=recorded(os.pwrite)))
    return sizes


@pytest.fixture
def unfrozen_gc() -> Iterator[None]:
    """Undo ``gc.freeze()`` after the test, so the rest of the session collects as usual."""
    yield
    gc.unfreeze()


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def local_store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def ready_job(local_store: LocalStore) -> jobs.Job:
    """A small job (3 x 2 tiles) in ``local_store`` with every tile stored: ready to assemble."""
    spec = parse_spec({"c": [-0.8, 0.156], "width": 40, "height": 30, "tile_size": 16, "max_iter": 60})
    job = jobs.create(local_store, spec)[0]
    for index in range(tile_count(spec)):
        tasks.render_tile(job.tile_task(index), local_store)
    return job


class GatedStore(LocalStore):
    """A local-folder store whose tile writes wait until ``gate`` is set: a job held mid-render for as
    long as a test needs, without timing anything."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.gate = threading.Event()

    def put(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        if key.startswith("tiles/"):
            self.gate.wait(60)
        super().put(key, data, content_type)


@pytest.fixture
def held_job(tmp_path) -> Iterator[SimpleNamespace]:
    """An in-process invoker running a small job whose tiles cannot be stored until ``gate.set()``:
    ``invoker``, ``gate``, ``job``. The gate opens at the end of the test in any case."""
    store = GatedStore(tmp_path / "gated")
    invoker = InProcessInvoker(store, workers=2)
    job = jobs.create(store, parse_spec({"c": [-0.8, 0.156], "width": 32, "height": 32, "tile_size": 16}))[0]
    invoker.dispatch(job, jobs.missing_tiles(store, job))
    try:
        yield SimpleNamespace(invoker=invoker, gate=store.gate, job=job)
    finally:
        store.gate.set()
        invoker.close()


class FunctionStub(http.server.ThreadingHTTPServer):
    """A function on a loopback port that answers every POST with ``status`` and the JSON ``body`` after
    ``delay`` seconds, and counts the calls: what the HTTP invoker's tests call instead of render_tile."""

    def __init__(self, status: int = 200, body: dict | None = None, delay: float = 0.0) -> None:
        self.calls = 0
        stub = self
        answer = json.dumps({"status": "done"} if body is None else body).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers["Content-Length"]))
                stub.calls += 1
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:  # the caller gave up and hung up
                    pass

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


@pytest.fixture
def function_stub() -> Iterator[Callable[..., FunctionStub]]:
    """``function_stub(status=200, body=None, delay=0.0)``: a started ``FunctionStub``, stopped after the test."""
    started: list[FunctionStub] = []

    def start(**kwargs: Any) -> FunctionStub:
        started.append(FunctionStub(**kwargs))
        return started[-1]

    yield start
    for stub in started:
        stub.shutdown()
        stub.server_close()


@dataclass
class ServedFunctions:
    """render_tile and assemble served over loopback HTTP by threads of this process, on one local store,
    with every request body they were sent, in order (for the HTTP invoker's tests)."""

    render_tile: str
    assemble: str
    store: LocalStore
    calls: dict[str, list[dict]]


@pytest.fixture
def served_functions(tmp_path) -> Iterator[ServedFunctions]:
    from werkzeug.serving import make_server

    from fractally.config import Settings
    from functions.assemble.app import create_app as create_assemble
    from functions.render_tile.app import create_app as create_render_tile

    settings = Settings(store_url=str(tmp_path / "store"))
    calls: dict[str, list[dict]] = {"render_tile": [], "assemble": []}
    servers = []
    for name, create in (("render_tile", create_render_tile), ("assemble", create_assemble)):
        app = create(settings)

        def recorded(environ, start_response, app=app, seen=calls[name]):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            seen.append(json.loads(body))
            environ["wsgi.input"] = io.BytesIO(body)
            return app(environ, start_response)

        server = make_server("127.0.0.1", 0, recorded, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        yield ServedFunctions(*(f"http://127.0.0.1:{s.server_port}/" for s in servers),
                              LocalStore(settings.store_url), calls)
    finally:
        for server in servers:
            server.shutdown()


# --- deep views: an independent exact reference (mpmath, not the gmpy2 the service uses) ---

@pytest.fixture(scope="session")
def exact_count() -> Callable[..., int]:
    """``exact_count(spec, i, j)``: a deep view's pixel counted in mpmath (``tests.reference.exact_deep_count``)."""
    from tests.reference import exact_deep_count

    return exact_deep_count


@pytest.fixture(scope="session")
def julia_repelling_point() -> tuple[str, str]:
    """-β for c = -0.8+0.156i, β = (1 + √(1-4c))/2 its repelling fixed point: a point of the Julia set
    (so every depth around it has detail), to 1,050 digits."""
    import mpmath

    with mpmath.workdps(1_100):
        beta = (1 + mpmath.sqrt(1 - 4 * mpmath.mpc("-0.8", "0.156"))) / 2
        return (mpmath.nstr(-beta.real, 1_050, min_fixed=-2, max_fixed=2),
                mpmath.nstr(-beta.imag, 1_050, min_fixed=-2, max_fixed=2))


@pytest.fixture(scope="session")
def deep_minibrot() -> dict:
    """A view of a period-797 minibrot 3e-599 wide beside c = i and its surroundings (counts 7,800 to
    10,000, about a tenth inside): where orbits pass within 1e-599 of 0 every period."""
    from tests.reference import minibrot_nucleus

    re_, im_, period, log_size = minibrot_nucleus(("3.1e-302", "1." + "0" * 301 + "7"), 2_600)
    scale = f"{10 ** (log_size % 1) * 8:.2f}e{int(log_size // 1)}"  # 8 times its size
    return {"fractal": "mandelbrot", "center": [re_, im_], "scale": scale, "period": period}
