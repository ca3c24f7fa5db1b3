"""Status-poll latency while a large job keeps every core busy.

Starts the embedded service, submits a large job (default 8192x8192, max_iter
1000), and while it renders sends --polls sequential GET /v1/renders/{id}
requests; reports p50/p99 latency, next to the same polls on the idle service
(after the job) as the baseline. Each busy poll is followed by a GET /healthz
(no store access, no work): the floor that the machine's scheduling alone sets.
With --runs N the whole measurement is repeated on a fresh service N times and
the percentiles are also given over every poll of every run.

    .venv/bin/python bench/responsive.py [--size 16384] [--polls 400] [--runs 3]
                                         [--json FILE] [--plot FILE.png]

``--json`` writes every latency (ms) and the percentiles; ``--plot`` draws the
distributions (idle, busy and /healthz while busy, with the 10 ms target) and
the busy polls in the order they were sent.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import requests

from common import embedded_service, fresh_store, percentile

#: What the status poll is held to (docs/architecture.md principle 6): p99 while every core renders.
TARGET_MS = 10.0


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


def measure(size: int, max_iter: int, polls: int, stores: str) -> dict:
    """One run on a fresh service and a new store under ``stores`` (emptied afterwards, not deleted:
    see ``common.fresh_store``): busy polls (and /healthz next to them), then idle polls; in ms."""
    spec = {"c": [-0.8, 0.156], "width": size, "height": size, "max_iter": max_iter}
    with fresh_store(stores) as store, embedded_service(store) as base:
        job_id = requests.post(base + "/v1/renders", json=spec, timeout=30).json()["id"]
        time.sleep(1.0)  # let the workers get going
        healthz: list[float] = []
        busy, status = poll_latencies(base, job_id, polls, stop_when_done=True, floor=healthz)
        if not healthz:  # the first status poll already said done
            raise SystemExit(f"the {spec['width']}x{spec['height']} job was done before the first busy poll: "
                             "give a larger --size")
        busy_status = status
        while status not in ("done", "failed"):
            time.sleep(0.5)
            status = requests.get(f"{base}/v1/renders/{job_id}", timeout=30).json()["status"]
        if status != "done":
            raise RuntimeError(f"the job ended {status}")
        idle, _ = poll_latencies(base, job_id, polls, stop_when_done=False)
    to_ms = lambda xs: [1000 * x for x in xs]  # noqa: E731
    return {"busy": to_ms(busy), "healthz": to_ms(healthz), "idle": to_ms(idle), "last_seen_busy": busy_status}


def summary(run: dict) -> dict:
    """p50, p99 and max of each series (ms)."""
    return {name: {"n": len(run[name]), "p50": percentile(run[name], 50), "p99": percentile(run[name], 99),
                   "max": max(run[name])} for name in ("busy", "healthz", "idle")}


def report(label: str, figures: dict) -> None:
    busy, healthz, idle = figures["busy"], figures["healthz"], figures["idle"]
    print(f"{label}: busy p50 {busy['p50']:.2f} ms  p99 {busy['p99']:.2f} ms  max {busy['max']:.2f} ms "
          f"({busy['n']} polls) | /healthz same time p50 {healthz['p50']:.2f}  p99 {healthz['p99']:.2f} ms | "
          f"idle p50 {idle['p50']:.2f}  p99 {idle['p99']:.2f} ms")


def _ms_ticks(axis) -> None:
    """Plain millisecond labels (1, 2, 5, 10, ...) on a log axis instead of 2x10^0 and friends."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis.set_major_locator(FixedLocator([0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500, 1000]))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot(runs: list[dict], pooled: dict, title: str, path: str) -> None:
    """Left: the latency distributions (share of polls answered within x ms, log x) with the 10 ms target;
    right: every busy poll in the order sent (one colour a run), so spikes and their spacing show."""
    import numpy as np

    from common import OTHER, OURS, TARGET, plot_axes, save_plot

    fig, (dist, seq) = plot_axes(2, width=5.2, height=3.8)
    series = [("idle", "idle service", OTHER), ("healthz", "/healthz while busy", "#7f7f7f"),
              ("busy", "status poll while busy", OURS)]
    for key, label, colour in series:
        values = np.sort(np.concatenate([run[key] for run in runs]))
        if not len(values):
            continue
        share = np.arange(1, len(values) + 1) / len(values)
        dist.step(values, share, where="post", color=colour, linewidth=1.4,
                  label=f"{label}: p50 {pooled[key]['p50']:.1f}, p99 {pooled[key]['p99']:.1f} ms")
    dist.axvline(TARGET_MS, color=TARGET, linestyle="--", linewidth=1, label=f"target: p99 < {TARGET_MS:g} ms")
    dist.axhline(0.99, color="black", linestyle=":", linewidth=0.8)
    dist.set_xscale("log")
    _ms_ticks(dist.xaxis)
    dist.set_xlabel("latency (ms, log scale)", fontsize=8)
    dist.set_ylabel("share of polls answered within", fontsize=8)
    dist.set_ylim(0, 1.02)
    dist.legend(fontsize=6.5, loc="lower right")
    dist.set_title("latency distribution, every run", fontsize=9)
    for i, run in enumerate(runs):
        seq.plot(range(len(run["busy"])), run["busy"], ".", markersize=2.5, alpha=0.7,
                 color=OURS if len(runs) == 1 else None, label=f"run {i + 1}")
    seq.axhline(TARGET_MS, color=TARGET, linestyle="--", linewidth=1)
    seq.set_yscale("log")
    _ms_ticks(seq.yaxis)
    seq.set_xlabel("busy status poll, in the order sent", fontsize=8)
    seq.set_ylabel("latency (ms, log scale)", fontsize=8)
    if len(runs) > 1:
        seq.legend(fontsize=6.5, loc="upper right", markerscale=3)
    seq.set_title("status polls while the job renders", fontsize=9)
    save_plot(fig, path, title)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--polls", type=int, default=400)
    ap.add_argument("--runs", type=int, default=1, help="repeat on a fresh service (default 1)")
    ap.add_argument("--json", metavar="FILE", help="also write every latency and the percentiles to this file")
    ap.add_argument("--plot", metavar="FILE.png", help="draw the latency distributions into this PNG")
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="fractally-resp-") as stores:
        for i in range(args.runs):
            run = measure(args.size, args.max_iter, args.polls, stores)
            runs.append(run)
            if args.runs > 1:
                report(f"run {i + 1}", summary(run))
    pooled = summary({key: [x for run in runs for x in run[key]] for key in ("busy", "healthz", "idle")})
    busy, healthz, idle = pooled["busy"], pooled["healthz"], pooled["idle"]
    print(f"status polls of a {args.size}x{args.size} max_iter {args.max_iter} job, {args.runs} run(s) "
          f"({busy['n']} while rendering, last seen '{runs[-1]['last_seen_busy']}'; {idle['n']} idle)")
    print(f"while both cores render: p50 {busy['p50']:.2f} ms  p99 {busy['p99']:.2f} ms  max {busy['max']:.2f} ms")
    print(f"  /healthz, same time:   p50 {healthz['p50']:.2f} ms  p99 {healthz['p99']:.2f} ms  "
          f"(no store, no work: the machine's floor)")
    print(f"idle service:            p50 {idle['p50']:.2f} ms  p99 {idle['p99']:.2f} ms")
    per_run = ", ".join(f"{summary(run)['busy']['p99']:.2f}" for run in runs)
    print(f"p99 busy / idle: {busy['p99'] / idle['p99']:.2f}x; median busy {busy['p50']:.2f} ms"
          + (f"; busy p99 of each run: {per_run} ms" if args.runs > 1 else ""))
    print(f"target p99 < {TARGET_MS:g} ms while busy: {'met' if busy['p99'] < TARGET_MS else 'missed'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": args.size, "max_iter": args.max_iter, "polls": args.polls, "cores": os.cpu_count(),
                       "target_ms": TARGET_MS, "pooled": pooled,
                       "runs": [{**run, "summary": summary(run)} for run in runs]}, f, indent=1)
    if args.plot:
        plot(runs, pooled, f"Status polls while a {args.size}x{args.size} job (max_iter {args.max_iter}) renders "
             f"on {os.cpu_count()} cores; {args.runs} run(s)", args.plot)


if __name__ == "__main__":
    main()
