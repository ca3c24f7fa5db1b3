"""Status-poll latency while a large job keeps every core busy.

Starts the embedded service, submits a large job (default 8192x8192, max_iter
1000), and while it renders sends --polls sequential GET /v1/renders/{id}
requests; reports p50/p99 latency, next to the same polls on the idle service
(after the job) as the baseline. Each busy poll is followed by a GET /healthz
(no store access, no work): the floor that the machine's scheduling alone sets.

    .venv/bin/python bench/responsive.py [--polls 400]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import requests

from common import embedded_service, median, percentile


def poll_latencies(base: str, job_id: str, count: int, stop_when_done: bool,
                   floor: list[float] | None = None) -> tuple[list[float], str]:
    """Status polls; with ``floor``, each is followed by a /healthz poll timed into it."""
    session = requests.Session()
    latencies, last = [], ""
    for _ in range(count):
        t0 = time.perf_counter()
        resp = session.get(f"{base}/v1/renders/{job_id}", timeout=30)
        latencies.append(time.perf_counter() - t0)
        resp.raise_for_status()
        last = resp.json()["status"]
        if stop_when_done and last == "done":
            break
        if floor is not None:
            time.sleep(0.005)
            t0 = time.perf_counter()
            session.get(f"{base}/healthz", timeout=30).raise_for_status()
            floor.append(time.perf_counter() - t0)
        time.sleep(0.005)
    return latencies, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--polls", type=int, default=400)
    args = ap.parse_args()
    spec = {"c": [-0.8, 0.156], "width": args.size, "height": args.size, "max_iter": args.max_iter}
    with tempfile.TemporaryDirectory(prefix="fractally-resp-") as store, embedded_service(store) as base:
        job_id = requests.post(base + "/v1/renders", json=spec, timeout=30).json()["id"]
        time.sleep(1.0)  # let the workers get going
        healthz: list[float] = []
        busy, status = poll_latencies(base, job_id, args.polls, stop_when_done=True, floor=healthz)
        busy_status = status
        while status != "done":
            time.sleep(0.5)
            status = requests.get(f"{base}/v1/renders/{job_id}", timeout=30).json()["status"]
        idle, _ = poll_latencies(base, job_id, args.polls, stop_when_done=False)
    ms = lambda xs, q: 1000 * percentile(xs, q)  # noqa: E731
    print(f"status polls of a {args.size}x{args.size} max_iter {args.max_iter} job "
          f"({len(busy)} while rendering, last seen '{busy_status}'; {len(idle)} idle)")
    print(f"while both cores render: p50 {ms(busy, 50):.2f} ms  p99 {ms(busy, 99):.2f} ms  max {1000 * max(busy):.2f} ms")
    print(f"  /healthz, same time:   p50 {ms(healthz, 50):.2f} ms  p99 {ms(healthz, 99):.2f} ms  "
          f"(no store, no work: the machine's floor)")
    print(f"idle service:            p50 {ms(idle, 50):.2f} ms  p99 {ms(idle, 99):.2f} ms")
    print(f"p99 busy / idle: {percentile(busy, 99) / percentile(idle, 99):.2f}x; median busy {1000 * median(busy):.2f} ms")


if __name__ == "__main__":
    main()
