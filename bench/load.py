"""A bounded load run against the multi-process stack: many clients, mixed requests, zero errors.

Starts ``fractally.ops.stack.Stack`` (an S3 test server, render_tile with one worker per core,
assemble, the api with the HTTP invoker; everything on 127.0.0.1), then runs --clients threads
for --seconds. Each client has its own keep-alive connection and loops over a weighted mix:

* ``sync``: ``GET /v1/render.png`` of a 64×64 image (varied c, colormap, max_iter);
* ``submit``: ``POST /v1/renders`` of a small job drawn from a pool of 40 specs (37 distinct
  jobs), so most submits are identical to an earlier one and must be answered with the existing
  job. Their latencies are reported apart: ``submit new`` is the first submit of each distinct
  spec in the run (the one that creates the job and dispatches its tiles; with a running
  service given by ``--api`` the job may exist from before), ``submit repeat`` every later one,
  split by the answer's status into ``repeat, running`` (the job not done yet) and
  ``repeat, done``; ``submit`` is all of them;
* ``poll``: ``GET /v1/renders/{id}`` of a job some client submitted.

An error is a transport failure, a timeout, or any status other than the one the kind expects
(200, 202, 200). The synchronous-render limiter answers ``503 busy`` with ``Retry-After`` when
its slots are taken; a well-behaved client waits that long and asks again, so this client does
(Retry-After plus up to 20 % jitter, for up to 30 s per request): a 503 it honoured is counted
under ``busy_retries``, not as an error, and the request's latency includes the waits. A 503
without Retry-After, or one still refused after 30 s, is an error. Before the clock starts, one
synchronous render and one job warm the processes up (numba loads its kernels on first use), so
the figures are of a running service. After the run every submitted job must reach ``done``
(nothing lost). Bounded in count and time; stops by itself.

    .venv/bin/python bench/load.py [--clients 100] [--seconds 60] [--json]
    .venv/bin/python bench/load.py --api http://127.0.0.1:8080   # against a running service
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = {"sync": 0.4, "submit": 0.2, "poll": 0.4}  # weights of the mix
EXPECTED = {"sync": 200, "submit": 202, "poll": 200}
TIMEOUT = 60.0  # seconds for one HTTP request
BUSY_PATIENCE = 30.0  # seconds a client keeps honouring 503 busy for one request
C_POOL = [(-0.8, 0.156), (0.285, 0.01), (-0.4, 0.6), (-0.7269, 0.1889), (0.355, 0.355), (-0.70176, -0.3842),
          (0.45, 0.1428), (-0.835, -0.2321)]
COLORMAPS = ["ocean", "fire", "grey", "dusk"]


def job_pool(seed: int = 7, size: int = 40) -> list[dict[str, Any]]:
    """Small, varied job specs (128×96 … 256×192 in 64 px tiles); the same seed gives the same pool."""
    rng = random.Random(seed)
    pool = []
    for _ in range(size):
        w = rng.choice([128, 192, 256])
        spec = {"c": list(rng.choice(C_POOL)), "width": w, "height": w * 3 // 4, "tile_size": 64,
                "max_iter": rng.choice([100, 200, 400]), "format": rng.choice(["png", "png", "msgpack"])}
        if spec["format"] == "png":
            spec["colormap"] = rng.choice(COLORMAPS)
        pool.append(spec)
    return pool


@dataclass
class Tally:
    """What the clients saw, merged under a lock."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    busy_retries: int = 0
    requests: int = 0  # HTTP requests sent, retries included
    job_ids: set[str] = field(default_factory=set)
    sent_specs: set[str] = field(default_factory=set)  # specs submitted so far (canonical JSON)
    lock: threading.Lock = field(default_factory=threading.Lock)


def one_request(session: requests.Session, api: str, kind: str, rng: random.Random, pool: list[dict],
                tally: Tally, deadline: float) -> None:
    """One logical request of ``kind`` (retrying an honoured 503 busy); records latency or an error."""
    with tally.lock:
        known = list(tally.job_ids) if kind == "poll" else []
    if kind == "poll" and not known:
        kind = "submit"
    if kind == "submit":  # the first submit of a spec sent in this run is the one that creates its job
        spec = rng.choice(pool)
        key = json.dumps(spec, sort_keys=True)
        with tally.lock:
            new_job = key not in tally.sent_specs
            tally.sent_specs.add(key)
    started = time.perf_counter()
    while True:
        try:
            if kind == "sync":
                params = {"c": "%r,%r" % rng.choice(C_POOL), "width": 64, "height": 64,
                          "max_iter": rng.choice([100, 200, 500]), "colormap": rng.choice(COLORMAPS)}
                resp = session.get(api + "/v1/render.png", params=params, timeout=TIMEOUT)
            elif kind == "submit":
                resp = session.post(api + "/v1/renders", json=spec, timeout=TIMEOUT)
            else:
                resp = session.get(f"{api}/v1/renders/{rng.choice(known)}", timeout=TIMEOUT)
        except requests.RequestException as err:
            with tally.lock:
                tally.requests += 1
                tally.errors.append(f"{kind}: {type(err).__name__}")
            return
        with tally.lock:
            tally.requests += 1
        retry_after = resp.headers.get("Retry-After")
        if resp.status_code == 503 and retry_after and retry_after.isdigit() \
                and time.perf_counter() + float(retry_after) - started < BUSY_PATIENCE:
            with tally.lock:
                tally.busy_retries += 1
            time.sleep(float(retry_after) * (1 + 0.2 * rng.random()))
            continue
        break
    elapsed = time.perf_counter() - started
    with tally.lock:
        if resp.status_code != EXPECTED[kind]:
            tally.errors.append(f"{kind}: HTTP {resp.status_code} {resp.text[:120]}")
            return
        if kind == "sync" and not resp.content.startswith(b"\x89PNG"):
            tally.errors.append("sync: not a PNG")
            return
        if kind == "submit":
            answer = resp.json()
            tally.job_ids.add(answer["id"])
            label = ("submit new" if new_job else
                     "repeat, done" if answer.get("status") == "done" else "repeat, running")
            tally.latencies[label].append(elapsed)
            if not new_job:
                tally.latencies["submit repeat"].append(elapsed)
        tally.latencies[kind].append(elapsed)


def client(api: str, seed: int, seconds: float, pool: list[dict], tally: Tally, start: threading.Barrier) -> None:
    rng = random.Random(seed)
    kinds, weights = list(KINDS), list(KINDS.values())
    with requests.Session() as session:
        start.wait()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            one_request(session, api, rng.choices(kinds, weights)[0], rng, pool, tally, deadline)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def wait_jobs(api: str, job_ids: set[str], timeout: float) -> dict[str, int]:
    """Poll every submitted job until it is done or failed (or time runs out): counts by status."""
    deadline = time.monotonic() + timeout
    pending, final = set(job_ids), {}
    with requests.Session() as session:
        while pending and time.monotonic() < deadline:
            for job_id in list(pending):
                status = session.get(f"{api}/v1/renders/{job_id}", timeout=TIMEOUT).json()["status"]
                if status in ("done", "failed"):
                    final[job_id] = status
                    pending.discard(job_id)
            time.sleep(0.2)
    counts: dict[str, int] = defaultdict(int)
    for status in final.values():
        counts[status] += 1
    counts["unfinished"] = len(pending)
    return dict(counts)


def warm_up(api: str, timeout: float = 120.0) -> None:
    """One synchronous render and one small job, so no measured request waits for a kernel to load."""
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        while session.get(api + "/v1/render.png", params={"c": "0,0", "width": 64, "height": 64},
                          timeout=TIMEOUT).status_code != 200:
            assert time.monotonic() < deadline, "the service does not render"
            time.sleep(1)
        spec = {"c": [0.0, 0.8], "width": 128, "height": 128, "tile_size": 64, "max_iter": 50}
        job_id = session.post(api + "/v1/renders", json=spec, timeout=TIMEOUT).json()["id"]
    assert wait_jobs(api, {job_id}, max(1.0, deadline - time.monotonic())).get("done") == 1, "warm-up job failed"


def run(api: str, clients: int, seconds: float, seed: int = 1, settle: float = 120.0) -> dict[str, Any]:
    warm_up(api)
    pool = job_pool()
    tally = Tally()
    start = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=client, args=(api, seed * 1000 + i, seconds, pool, tally, start), daemon=True)
               for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.monotonic()
    for t in threads:
        t.join(seconds + BUSY_PATIENCE + 2 * TIMEOUT)
    wall = time.monotonic() - began
    jobs = wait_jobs(api, tally.job_ids, settle)
    order = ["sync", "poll", "submit", "submit new", "submit repeat", "repeat, running", "repeat, done"]
    kinds = {kind: {"count": len(v), "p50_ms": 1000 * percentile(v, 50), "p90_ms": 1000 * percentile(v, 90),
                    "p99_ms": 1000 * percentile(v, 99), "max_ms": 1000 * max(v)}
             for kind, v in sorted(tally.latencies.items(), key=lambda kv: order.index(kv[0])) if v}
    return {"clients": clients, "seconds": seconds, "wall_seconds": round(wall, 1),
            "requests": tally.requests,
            "logical_requests": sum(len(tally.latencies[k]) for k in EXPECTED),
            "errors": len(tally.errors), "error_samples": tally.errors[:10], "busy_retries": tally.busy_retries,
            "kinds": kinds, "jobs": {"submitted_unique": len(tally.job_ids), **jobs}}


def report(result: dict[str, Any]) -> str:
    lines = [f"{result['clients']} clients for {result['seconds']:g} s (wall {result['wall_seconds']} s): "
             f"{result['requests']} HTTP requests ({result['requests'] / result['wall_seconds']:.0f}/s), "
             f"{result['errors']} errors, {result['busy_retries']} honoured 503 busy retries",
             f"{'kind':17} {'count':>7} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'max ms':>9}"]
    for kind, k in result["kinds"].items():
        indent = "  " if kind.startswith(("submit ", "repeat")) else ""
        indent += "  " if kind.startswith("repeat") else ""
        lines.append(f"{indent + kind:17} {k['count']:7d} {k['p50_ms']:9.1f} {k['p90_ms']:9.1f} {k['p99_ms']:9.1f} "
                     f"{k['max_ms']:9.1f}")
    jobs = result["jobs"]
    lines.append(f"jobs: {jobs['submitted_unique']} distinct submitted, {jobs.get('done', 0)} done, "
                 f"{jobs.get('failed', 0)} failed, {jobs['unfinished']} unfinished")
    lines += [f"  error: {e}" for e in result["error_samples"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--api", help="a running service's base URL (default: start the stack)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    if not 1 <= args.clients <= 1000 or not 0 < args.seconds <= 3600:
        ap.error("--clients must be 1..1000 and --seconds 0..3600")
    if args.api:
        result = run(args.api.rstrip("/"), args.clients, args.seconds, args.seed)
    else:
        from fractally.ops.stack import Stack

        env = {k: v for k, v in os.environ.items() if not k.startswith(("FRACTALLY_", "AWS_"))}
        with tempfile.TemporaryDirectory(prefix="fractally-load-") as logs, \
                Stack(log_dir=logs, base_env=env, log_level="warning") as stack:
            result = run(stack.urls.api, args.clients, args.seconds, args.seed)
            dead = stack.dead()
            result["stack_alive"] = dead is None
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0 if result["errors"] == 0 and result["jobs"].get("unfinished", 0) == 0 \
        and result["jobs"].get("failed", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
