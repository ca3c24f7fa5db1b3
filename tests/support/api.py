"""The api's test helpers: a tiny job's spec, waiting for a job, a store's keys, and ``running_server``.

The fixtures over Flask apps (``api_make_app``, ``api_app``, ``api_client``, ``api_store``) are in
tests/conftest.py, since tests of several folders use them; ``api_server`` is in tests/web/conftest.py.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fractally.ops import serving
from fractally.ops.serving import LiveServer
from fractally.store import LocalStore, ObjectStore

REPO_ROOT = Path(__file__).resolve().parents[2]
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


def running_server(workdir: Path, command: list[str] | None = None, *, env: dict[str, str] | None = None,
                   startup_timeout: float = 60.0) -> contextlib.AbstractContextManager[LiveServer]:
    """``fractally.ops.serving.running_server`` with two render workers: test modules run two at a time."""
    return serving.running_server(workdir, command, env={"FRACTALLY_WORKERS": "2", **(env or {})},
                                  startup_timeout=startup_timeout)


