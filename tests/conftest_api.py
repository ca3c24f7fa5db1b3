"""Api fixtures: Flask apps over their own store folder, and a real ``fractally serve`` on 127.0.0.1.

Loaded from tests/conftest.py via ``pytest_plugins``. Names start with ``api_`` so they cannot
shadow another plugin's fixtures.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fractally.config import Settings
from fractally.ops import serving
from fractally.ops.serving import LiveServer
from fractally.store import LocalStore, ObjectStore

REPO_ROOT = Path(__file__).resolve().parents[1]
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


def running_server(workdir: Path, command: list[str] | None = None, *, env: dict[str, str] | None = None,
                   startup_timeout: float = 60.0) -> contextlib.AbstractContextManager[LiveServer]:
    """``fractally.ops.serving.running_server`` with two render workers: test modules run two at a time."""
    return serving.running_server(workdir, command, env={"FRACTALLY_WORKERS": "2", **(env or {})},
                                  startup_timeout=startup_timeout)


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server per test module (starting one takes a second or two)."""
    with running_server(tmp_path_factory.mktemp("serve")) as server:
        yield server
