"""Proof, while an image is built, that its baked numba cache is what a cold start uses.

Each function target of the Dockerfile runs ``fractally image-check NAME`` through the image's
entrypoint, as the image's user (who can write nothing but /tmp, as under a read-only root): it
starts ``fractally function NAME`` -- the image's own command -- on a loopback port, sends it the
requests that load every kernel it runs (for each warm-up spec: a tile, an assembly, or a whole
job through the api), stops it, and fails if any file of ``NUMBA_CACHE_DIR`` was added or
rewritten meanwhile: numba writes there exactly when it compiles. A cache written for another
path, Python or CPU target, or not copied where numba looks, fails the build instead of costing
every cold start the compilation (seconds a kernel).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from fractally import jobs
from fractally.jobs import tasks
from fractally.picture.spec import parse_spec
from fractally.ops.stack import free_port
from fractally.store import LocalStore
from fractally.picture.warmup import WARM_SPECS

STARTUP_TIMEOUT = 120.0
REQUEST_TIMEOUT = 120.0


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder``: its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def _wait_healthy(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the function exited with status {proc.returncode} before serving")
        try:
            if requests.get(url + "/healthz", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the function did not answer /healthz within {STARTUP_TIMEOUT:.0f} s")


def _post(url: str, body: dict) -> dict:
    response = requests.post(url, json=body, timeout=REQUEST_TIMEOUT)
    response.raise_for_status()
    return response.json()


def exercise(name: str, url: str, store: LocalStore) -> int:
    """Send function ``name`` the requests that run each warm-up spec's kernels; how many were sent."""
    specs = [parse_spec(raw) for raw in WARM_SPECS]
    specs += [parse_spec({**raw, "format": "msgpack"}) for raw in WARM_SPECS]  # assemble's other writer
    for spec in specs:
        job, _ = jobs.create(store, spec)
        if name == "render-tile":
            for index in range(job.tiles_total):
                _post(url + "/", job.tile_task(index))
        elif name == "assemble":
            for index in range(job.tiles_total):  # in this process: it loads the kernels from the cache too
                tasks.render_tile(job.tile_task(index), store)
            if _post(url + "/", {"job": job.id})["status"] != "done":
                raise RuntimeError(f"assemble did not finish job {job.id}")
        else:
            created = _post(url + "/v1/renders", spec.normalized())
            deadline = time.monotonic() + REQUEST_TIMEOUT
            while requests.get(f"{url}/v1/renders/{created['id']}", timeout=10).json()["status"] != "done":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the api did not finish job {created['id']}")
                time.sleep(0.05)
    return len(specs)


def check(name: str) -> int:
    """Serve ``name`` as the image does and exercise it; 1 if numba compiled anything, else 0."""
    cache = Path(os.environ.get("NUMBA_CACHE_DIR") or "")
    if not cache.is_dir() or not any(cache.iterdir()):
        print(f"image-check: error: no numba cache at NUMBA_CACHE_DIR={cache} (the entrypoint copies it there)",
              file=sys.stderr)
        return 1
    before = snapshot(cache)
    scratch = Path(tempfile.mkdtemp(prefix="image-check-"))
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "FRACTALLY_INVOKER": "inprocess",
           "FRACTALLY_STORE_URL": str(scratch / "store")}
    started = time.perf_counter()
    proc = subprocess.Popen(["fractally", "function", name], env=env)  # the image's CMD
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc)
        requests_sent = exercise(name, url, LocalStore(scratch / "store"))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(scratch, ignore_errors=True)
    after = snapshot(cache)
    written = sorted(path for path in after if before.get(path) != after[path])
    if cache.is_relative_to(tempfile.gettempdir()):
        shutil.rmtree(cache, ignore_errors=True)  # the entrypoint's copy: not part of the image
    report = {"function": name, "jobs": requests_sent, "cache_files": len(before), "written": written,
              "seconds": round(time.perf_counter() - started, 2)}
    print("image-check:", json.dumps(report), flush=True)
    if written:
        print(f"image-check: error: serving {name} compiled kernels instead of loading them from the baked "
              f"cache (numba wrote {len(written)} file(s)); the cache was built for another path, Python or "
              "CPU target", file=sys.stderr)
        return 1
    return 0
