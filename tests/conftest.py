"""Fixtures the tests of several folders use, and the CI rule on skips. A folder's own fixtures are in its
conftest.py; helpers that are not fixtures are in tests/support/."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fractally import jobs
from fractally.config import Settings
from fractally.jobs import tasks
from fractally.jobs.invoke import InProcessInvoker
from fractally.picture.spec import parse_spec
from fractally.picture.tiling import tile_count
from fractally.store import LocalStore, ObjectStore, open_store
from tests.support.functions import FunctionStub
from tests.support.store import S3_TEST_CREDENTIALS, S3_TEST_REGION, GatedStore

#: The only tests that may skip when ``CI=true``: test id -> why skipping there is right. Any other
#: skip fails a CI run (``pytest_sessionfinish``): CI installs everything the suite needs (Chromium,
#: Docker, nats-server, moto), so a skip there means a check silently did not run.
CI_SKIP_ALLOWED: dict[str, str] = {
    "tests/picture/test_kernel.py::test_no_fused_multiply_add_in_the_machine_code":
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


@pytest.fixture
def api_make_app(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make(**settings) -> Flask``: a fresh app over ``tmp_path/store-N``; services closed afterwards."""
    from functions.api.app import create_app

    apps = []

    def make(service: Any = None, **changes: Any) -> Any:
        if service is None:
            settings = Settings(store_url=str(tmp_path / f"store-{len(apps)}"), workers=2).with_(**changes)
            app = create_app(settings)
        else:
            app = create_app(service=service)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["fractally"].service.close()


@pytest.fixture
def api_app(api_make_app: Callable[..., Any]) -> Any:
    return api_make_app()


@pytest.fixture
def api_client(api_app: Any) -> Any:
    return api_app.test_client()


@pytest.fixture
def api_store(api_app: Any) -> ObjectStore:
    return api_app.extensions["fractally"].service.store


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """Endpoint URL of an S3-compatible server (moto) listening on 127.0.0.1 for the session."""
    server_module = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the SDK away from the developer's ~/.aws, AWS_* variables and instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_store_factory(s3_server: str, aws_isolated: None) -> Iterator[Callable[..., Any]]:
    """``make(prefix="t", **kwargs) -> S3Store`` on a new, empty bucket; emptied afterwards."""
    made = []

    def make(prefix: str = "t", **kwargs: Any) -> Any:
        bucket = f"test-{uuid.uuid4().hex[:16]}"
        store = open_store(
            f"s3://{bucket}/{prefix}",
            endpoint_url=s3_server,
            region=S3_TEST_REGION,
            **{**S3_TEST_CREDENTIALS, **kwargs},
        )
        store.create_bucket()
        made.append(store)
        return store

    yield make
    for store in made:  # free the server's memory; the server outlives the test
        with contextlib.suppress(Exception):
            client = store.client
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
                for obj in page.get("Contents", ()):
                    client.delete_object(Bucket=store.bucket, Key=obj["Key"])
            client.delete_bucket(Bucket=store.bucket)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> ObjectStore:
    """The same conformance tests run against a local folder and against S3 over HTTP."""
    if request.param == "local":
        return open_store((tmp_path / "store").as_uri())
    return request.getfixturevalue("s3_store_factory")()
