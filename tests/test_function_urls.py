"""A function URL setting may name several replicas (compose.yaml: two render-tile containers on the
host's network, no load balancer in front): the HTTP invoker takes them in turn and retries on the
next one, so one replica down costs no call. Real HTTP servers on loopback."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from fractally.config import Settings
from fractally.invoke import HttpInvoker
from fractally.stack import free_port
from fractally.store import LocalStore


class Replica(http.server.ThreadingHTTPServer):
    """A function replica that answers every POST with 200 and counts them."""

    def __init__(self) -> None:
        self.calls = 0

        replica = self

        class Answer(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers["Content-Length"]))
                replica.calls += 1
                body = json.dumps({"status": "done"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Answer)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started = [Replica(), Replica()]
    yield started
    for replica in started:
        replica.shutdown()
        replica.server_close()


def invoker(tmp_path, urls: str) -> HttpInvoker:
    return HttpInvoker(LocalStore(tmp_path / "store"),
                       Settings(store_url=str(tmp_path / "store"), invoker="http", render_tile_url=urls,
                                assemble_url=urls, http_retries=2))


def test_calls_take_the_replicas_in_turn(tmp_path, replicas: list[Replica]) -> None:
    calls = invoker(tmp_path, ",".join(r.url for r in replicas))
    for _ in range(10):
        calls.call(calls._render_tile_urls, {"job": "0" * 32})
    assert [r.calls for r in replicas] == [5, 5]


def test_a_replica_that_is_down_costs_no_call(tmp_path, replicas: list[Replica]) -> None:
    down = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    calls = invoker(tmp_path, f"{down}, {replicas[0].url}")
    for _ in range(6):
        assert calls.call(calls._render_tile_urls, {"job": "0" * 32}) == {"status": "done"}
    assert replicas[0].calls == 6


def test_one_url_is_one_replica(tmp_path, replicas: list[Replica]) -> None:
    calls = invoker(tmp_path, replicas[1].url)
    assert calls._render_tile_urls == [replicas[1].url]
    calls.call(calls._assemble_urls, {"job": "0" * 32})
    assert [r.calls for r in replicas] == [0, 1]
