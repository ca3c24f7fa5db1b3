"""A function URL setting may name several replicas (compose.yaml: two render-tile containers on the
host's network, no load balancer in front): the HTTP invoker takes them in turn and retries on the
next one, so one replica down costs no call. Real HTTP servers on loopback."""

from __future__ import annotations

import pytest

from fractally.config import Settings
from fractally.jobs.invoke import HttpInvoker
from fractally.ops.stack import free_port
from fractally.store import LocalStore
from tests.support.functions import FunctionStub


@pytest.fixture
def replicas(function_stub) -> list[FunctionStub]:
    return [function_stub(), function_stub()]


def invoker(tmp_path, urls: str) -> HttpInvoker:
    return HttpInvoker(LocalStore(tmp_path / "store"),
                       Settings(store_url=str(tmp_path / "store"), invoker="http", render_tile_url=urls,
                                assemble_url=urls, http_retries=2))


def test_calls_take_the_replicas_in_turn(tmp_path, replicas: list[FunctionStub]) -> None:
    calls = invoker(tmp_path, ",".join(r.url for r in replicas))
    for _ in range(10):
        calls.call(calls._render_tile_urls, {"job": "0" * 32})
    assert [r.calls for r in replicas] == [5, 5]


def test_a_replica_that_is_down_costs_no_call(tmp_path, replicas: list[FunctionStub]) -> None:
    down = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    calls = invoker(tmp_path, f"{down}, {replicas[0].url}")
    for _ in range(6):
        assert calls.call(calls._render_tile_urls, {"job": "0" * 32}) == {"status": "done"}
    assert replicas[0].calls == 6


def test_one_url_is_one_replica(tmp_path, replicas: list[FunctionStub]) -> None:
    calls = invoker(tmp_path, replicas[1].url)
    assert calls._render_tile_urls == [replicas[1].url]
    calls.call(calls._assemble_urls, {"job": "0" * 32})
    assert [r.calls for r in replicas] == [0, 1]
