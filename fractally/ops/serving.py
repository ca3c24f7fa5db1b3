"""A real ``fractally serve`` on 127.0.0.1 for as long as a block runs: the one way tests and benches start one.

The port is the one the server prints (``--port 0``: the kernel picks it, so there is no race for a free
port); ready means ``/healthz`` answers 200; the end of the block stops it with SIGTERM (SIGKILL after
20 s). None of the developer's own ``FRACTALLY_*`` settings reach it: only the store folder and ``env``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fractally.config import PREFIX
from fractally.store import LocalStore

#: The checkout this package runs from: the server's working folder, so ``functions`` imports.
ROOT = Path(__file__).resolve().parents[2]
_URL = re.compile(r"http://127\.0\.0\.1:[1-9][0-9]*")


@dataclass
class LiveServer:
    """A running server: its base URL (no trailing slash), store folder, process and output files."""

    url: str
    store_root: Path
    proc: subprocess.Popen
    stdout: Path
    stderr: Path

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.store_root)


def serve_command(*extra: str) -> list[str]:
    """The embedded service's command line on a port of the kernel's choosing."""
    return [sys.executable, "-m", "fractally.cli", "serve", "--host", "127.0.0.1", "--port", "0", *extra]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False  # not up yet, or slow on a busy machine


@contextlib.contextmanager
def running_server(workdir: Path, command: Sequence[str] | None = None, *, env: Mapping[str, str] | None = None,
                   store_root: Path | None = None, startup_timeout: float = 60.0) -> Iterator[LiveServer]:
    """Run ``command`` (default ``serve_command("--workers-threads", "16")``) with its store in
    ``store_root`` (default ``workdir/store``) and its output in ``workdir/serve.out`` and ``serve.err``;
    ``env``: settings of its own on top (another invoker, say)."""
    workdir = Path(workdir)
    store_root = Path(store_root) if store_root is not None else workdir / "store"
    out, err = workdir / "serve.out", workdir / "serve.err"
    full = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    full.update({PREFIX + "STORE_URL": str(store_root), **(env or {})})
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(list(command or serve_command("--workers-threads", "16")), cwd=ROOT, env=full,
                                stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + startup_timeout
        url = None
        while url is None or not _healthy(url):
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}: {err.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not get ready in {startup_timeout} s: {err.read_text()[-2000:]}")
            if url is None:
                found = _URL.search(out.read_text() + "\n" + err.read_text())
                url = found.group(0) if found else None
            time.sleep(0.05)
        yield LiveServer(url, store_root, proc, out, err)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
