"""What the benchmark scripts share: starting the embedded service, timing, job polling."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import requests

ROOT = Path(__file__).resolve().parent.parent
#: The server process behind each base URL that ``embedded_service`` yielded (for ``cpu_seconds``).
SERVERS: dict[str, subprocess.Popen] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def embedded_service(store_dir: str | Path, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """``fractally serve`` on a free loopback port; yields its base URL and stops it afterwards."""
    port = free_port()
    env = {**os.environ, "FRACTALLY_STORE_URL": str(store_dir), **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "fractally.cli", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    SERVERS[base] = proc
    try:
        wait_healthy(base, proc)
        yield base
    finally:
        SERVERS.pop(base, None)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_healthy(base: str, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if requests.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{base} did not become healthy in {timeout} s")


def run_job(base: str, spec: dict, poll: float = 0.02, timeout: float = 900.0) -> dict:
    """Submit ``spec`` and poll until it is done; returns the final status."""
    resp = requests.post(base + "/v1/renders", json=spec, timeout=30)
    resp.raise_for_status()
    job_id = resp.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(f"{base}/v1/renders/{job_id}", timeout=30).json()
        if status["status"] in ("done", "failed"):
            if status["status"] == "failed":
                raise RuntimeError(f"job failed: {status.get('error')}")
            return status
        time.sleep(poll)
    raise TimeoutError(f"job {job_id} not done after {timeout} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds so far of a process and all its descendants (Linux /proc), e.g.
    gunicorn's master and worker: a figure the other tenants of a shared machine do not move."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_job_in(base: str, store_dir: str | Path, spec: dict, timeout: float = 900.0) -> dict:
    """``run_job`` for timing: submit over HTTP, then watch the local store for the result object
    (a ``stat`` every 2 ms, nearly free) and confirm over HTTP once. Polling the status over HTTP
    every few ms costs the client and the server a few per cent of a core, which a timed job on
    every core pays for (the status is read off the same store objects)."""
    resp = requests.post(base + "/v1/renders", json=spec, timeout=30)
    resp.raise_for_status()
    body = resp.json()
    folder = Path(store_dir, "jobs", body["id"])
    result, failed = folder / f"result.{body['spec']['format']}", folder / "failed.json"
    deadline = time.monotonic() + timeout
    while not (result.exists() or failed.exists()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {body['id']} not done after {timeout} s")
        time.sleep(0.002)
    status = requests.get(f"{base}/v1/renders/{body['id']}", timeout=30).json()
    if status["status"] != "done":
        raise RuntimeError(f"job {body['id']} is {status['status']}: {status.get('error')}")
    return status


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]
