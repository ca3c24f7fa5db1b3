"""The HTTP invoker waits ``assemble_timeout`` for assemble and ``http_timeout`` for a tile.

Assembling a large image takes longer than rendering a tile (the clusters allow 600 s against 300 s);
one timeout for both cut assemblies short at the tile's limit. Here a function on a loopback port
answers after a delay longer than the tile timeout and shorter than the assemble timeout.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fractally import jobs
from fractally.config import Settings
from fractally.jobs.invoke import HttpInvoker
from fractally.picture.spec import parse_spec
from fractally.store import LocalStore

DELAY = 1.0  # seconds the slow function takes to answer
TILE_TIMEOUT = 0.3
ASSEMBLE_TIMEOUT = 10.0


@pytest.fixture
def slow_function(function_stub) -> str:
    """A function that answers every POST with 200 after ``DELAY`` seconds."""
    return function_stub(delay=DELAY).url


def run(tmp_path: Path, url: str, indices: list[int]) -> str | None:
    """Dispatch a job's ``indices`` (none: straight to assemble) and wait; the job's failure, if any."""
    store = LocalStore(tmp_path / "store")
    settings = Settings(invoker="http", render_tile_url=url, assemble_url=url, http_retries=0,
                        http_timeout=TILE_TIMEOUT, assemble_timeout=ASSEMBLE_TIMEOUT)
    job = jobs.new_job(parse_spec({"c": [-0.8, 0.156], "width": 64, "height": 64, "tile_size": 64}))
    invoker = HttpInvoker(store, settings)
    try:
        invoker.dispatch(job, indices)
        assert invoker.wait_until_idle(ASSEMBLE_TIMEOUT + 5)
    finally:
        invoker.close()
    key = jobs.failed_key(job.id)
    return json.loads(store.get(key))["error"]["message"] if store.exists(key) else None


def test_assemble_may_take_longer_than_a_tile_call(tmp_path: Path, slow_function: str) -> None:
    assert run(tmp_path, slow_function, []) is None


def test_a_tile_call_still_times_out_after_the_http_timeout(tmp_path: Path, slow_function: str) -> None:
    failure = run(tmp_path, slow_function, [0])
    assert failure is not None and "Timeout" in failure


def test_the_assemble_timeout_is_a_setting_of_its_own() -> None:
    assert Settings.from_env({"FRACTALLY_ASSEMBLE_TIMEOUT": "900"}).assemble_timeout == 900
    assert Settings.from_env({}).assemble_timeout == 600
    assert Settings.from_env({"FRACTALLY_HTTP_TIMEOUT": "30"}).assemble_timeout == 600
