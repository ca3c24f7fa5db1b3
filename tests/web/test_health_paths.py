"""Health and readiness paths: ours (/healthz, /readyz) and OpenFaaS's (/_/health, /_/ready).

OpenFaaS Community Edition probes ``GET /_/health`` on port 8080 for liveness *and* readiness and
ignores the annotations that name another path; OpenFaaS Pro honours ``com.openfaas.ready.http.path``.
So every app answers all four: the liveness paths without touching the store (a slow store must not
restart pods), the readiness paths only while the object store answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask

from fractally.config import Settings
from fractally.errors import StoreUnavailable
from fractally.jobs.queue import HEALTH_PATHS, serve_health
from fractally.store import ObjectStore

FOLDERS = ["api", "render_tile", "assemble"]
LIVENESS = ["/healthz", "/_/health"]
READINESS = ["/readyz", "/_/ready"]


@pytest.fixture(params=FOLDERS)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    """Each function's real app (its own factory) over a local-folder store."""
    module = __import__(f"functions.{request.param}.app", fromlist=["create_app"])
    app = module.create_app(Settings(store_url=str(tmp_path / "store"), workers=1))
    yield app
    if "fractally" in app.extensions:  # the api's service owns thread pools
        app.extensions["fractally"].service.close()


def store_of(app: Flask) -> ObjectStore:
    return app.extensions["fractally"].service.store if "fractally" in app.extensions \
        else app.extensions["fractally.store"]


def break_store(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every store call fails as an unreachable store would (the error text must not leak)."""
    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OSError("connection refused by 10.0.0.7:9000 (secret detail)")

    monkeypatch.setattr(store_of(app), "exists", unreachable)


@pytest.mark.parametrize("path", LIVENESS)
def test_every_app_answers_the_liveness_paths(app: Flask, path: str) -> None:
    response = app.test_client().get(path)
    assert response.status_code == 200 and response.json == {"status": "ok"}


@pytest.mark.parametrize("path", READINESS)
def test_every_app_is_ready_while_its_store_answers(app: Flask, path: str) -> None:
    response = app.test_client().get(path)
    assert response.status_code == 200 and response.json == {"status": "ready"}


@pytest.mark.parametrize("path", READINESS)
def test_every_app_is_not_ready_when_its_store_cannot_be_reached(app: Flask, path: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    break_store(app, monkeypatch)
    response = app.test_client().get(path)
    assert response.status_code == 503 and response.json["error"]["code"] == StoreUnavailable.code
    assert "secret" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", LIVENESS)
def test_liveness_stays_up_when_the_store_cannot_be_reached(app: Flask, path: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """CE uses /_/health as its liveness probe: a store outage must not restart every pod."""
    break_store(app, monkeypatch)
    assert app.test_client().get(path).status_code == 200


def test_health_answers_are_never_cached(app: Flask) -> None:
    for path in LIVENESS + READINESS:
        assert app.test_client().get(path).headers["Cache-Control"] == "no-store"


class _Worker:
    connected = False


@pytest.fixture
def worker_health() -> Iterator[tuple[type[_Worker], str]]:
    """The queue worker's own health server, on a loopback port, over a worker we can (dis)connect."""
    worker = type("Worker", (_Worker,), {})
    server = serve_health(worker, "127.0.0.1", 0)  # type: ignore[arg-type]
    try:
        yield worker, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_worker_health_server_answers_every_probe_path(worker_health: tuple[type[_Worker], str]) -> None:
    assert set(HEALTH_PATHS) == set(LIVENESS + READINESS)
    worker, url = worker_health
    assert {p: requests.get(url + p, timeout=5).status_code for p in HEALTH_PATHS} == dict.fromkeys(HEALTH_PATHS, 503)
    worker.connected = True
    assert {p: requests.get(url + p, timeout=5).status_code for p in HEALTH_PATHS} == dict.fromkeys(HEALTH_PATHS, 200)


def test_worker_health_server_says_404_for_other_paths(worker_health: tuple[type[_Worker], str]) -> None:
    worker, url = worker_health
    worker.connected = True
    response = requests.get(url + "/metrics", timeout=5)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
