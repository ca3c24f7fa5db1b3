"""Api fixtures: Flask apps over their own store folder, and a real ``fractally serve`` on 127.0.0.1.

Loaded from tests/conftest.py via ``pytest_plugins``. Names start with ``api_`` so they cannot
shadow another plugin's fixtures.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fractally.config import Settings
from fractally.store import LocalStore, ObjectStore

REPO_ROOT = Path(__file__).resolve().parents[1]
_URL = re.compile(r"http://127\.0\.0\.1:[1-9][0-9]*")
#: A tiny julia job: 4 tiles of 16 px, rendered in milliseconds.
SMALL_SPEC = {"c": [-0.8, 0.156], "width": 32, "height": 24, "max_iter": 100, "tile_size": 16}


def wait_until_done(get_status: Callable[[str], dict[str, Any]], job_id: str, timeout: float = 120.0) -> dict:
    """Poll a job's status (``get_status(id) -> body``) until it is done or failed."""
    deadline = time.monotonic() + timeout
    while True:
        body = get_status(job_id)
        if body["status"] in ("done", "failed"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {body['status']} after {timeout} s: {body}")
        time.sleep(0.05)


def store_snapshot(store: ObjectStore) -> list[str]:
    """Every key, plus anything a writer left in a local store's temp folder."""
    keys = store.list("")
    if isinstance(store, LocalStore):
        keys += [f"~tmp/{p.name}" for p in (store.root / "~tmp").iterdir()]
    return keys


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


@dataclass
class LiveServer:
    """A running ``fractally serve``: its base URL (no trailing slash), store folder and process."""

    url: str
    store_root: Path
    proc: subprocess.Popen
    stdout: Path

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.store_root)


@contextlib.contextmanager
def running_server(workdir: Path, command: list[str] | None = None, *,
                   startup_timeout: float = 60.0, env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """Start ``command`` (default ``python -m fractally.cli serve --port 0``), store in ``workdir/store``;
    ``env``: variables of its own on top (FRACTALLY_* settings for another invoker, say).

    The port comes from the server's own output (no race for a free port): the first
    ``http://127.0.0.1:PORT`` it prints; ready means /healthz answers 200. Stopped with SIGTERM
    at the end (killed if it does not stop within 20 s).
    """
    import requests

    store_root = workdir / "store"
    out, err = workdir / "serve.out", workdir / "serve.err"
    own, env = env or {}, {k: v for k, v in os.environ.items() if not k.startswith("FRACTALLY_")}  # none of the developer's
    env.update({"FRACTALLY_STORE_URL": str(store_root), "FRACTALLY_WORKERS": "2", **own})
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        command = command or [sys.executable, "-m", "fractally.cli", "serve", "--host", "127.0.0.1",
                              "--port", "0", "--workers-threads", "16"]
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=stdout, stderr=stderr,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + startup_timeout
        url = None
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"fractally serve exited with {proc.returncode}: {err.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"fractally serve did not get ready: {err.read_text()[-2000:]}")
            if url is None:
                found = _URL.search(out.read_text() + "\n" + err.read_text())
                url = found.group(0) if found else None
            if url is not None:
                with contextlib.suppress(requests.RequestException):  # not up yet, or slow on a busy machine
                    if requests.get(url + "/healthz", timeout=5).status_code == 200:
                        break
            time.sleep(0.1)
        yield LiveServer(url, store_root, proc, out)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server per test module (starting one takes a second or two)."""
    with running_server(tmp_path_factory.mktemp("serve")) as server:
        yield server
