"""Functions served over loopback HTTP for the invokers' tests: a stub that answers anything, the real
render_tile and assemble on threads of the test process."""

from __future__ import annotations

import http.server
import json
import threading
import time
from dataclasses import dataclass

from fractally.store import LocalStore


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


@dataclass
class ServedFunctions:
    """render_tile and assemble served over loopback HTTP by threads of this process, on one local store,
    with every request body they were sent, in order (for the HTTP invoker's tests)."""

    render_tile: str
    assemble: str
    store: LocalStore
    calls: dict[str, list[dict]]
