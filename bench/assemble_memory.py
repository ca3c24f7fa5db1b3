"""Peak memory of assembling a big job: bounded by a band of tiles, not by the image.

Renders every tile of a SIZE x SIZE job into a local store (not measured), then
assembles it in a fresh process and reports that process's peak RSS, next to
the size of the image as raw RGB and as counts+smooth in memory, and the time.

    .venv/bin/python bench/assemble_memory.py [--size 16384] [--format png] [--plot memory.png]

``--plot`` also samples the assembling process's resident set (VmRSS, from this process, every
``--sample-ms`` ms) and draws it over time against the 512 MiB limit.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def vm_hwm_mib() -> float:
    """This process's peak resident set (VmHWM). Unlike ru_maxrss it is not inherited from the
    parent across fork+exec, so the parent's numba-sized footprint does not leak into the figure."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(store_dir: str, job_id: str) -> None:
    """Runs in a fresh process: assemble, then print peak RSS and time as JSON."""
    from fractally import tasks
    from fractally.store import open_store

    store = open_store(store_dir)
    rss_before = vm_hwm_mib()
    start = time.monotonic()  # CLOCK_MONOTONIC: the same clock as the parent's samples
    t0 = time.perf_counter()
    result = tasks.assemble(job_id, store)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_rss_mib": vm_hwm_mib(), "baseline_rss_mib": rss_before,
                      "bytes": result.get("bytes"), "status": result["status"], "start": start,
                      "end": time.monotonic()}))


def sample_rss(pid: int, every: float, samples: list[tuple[float, float]], stop: threading.Event) -> None:
    """(monotonic time, VmRSS MiB) of ``pid`` every ``every`` seconds until ``stop`` or its exit."""
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status") as status:
                rss = next((int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:")), None)
        except (FileNotFoundError, ProcessLookupError):
            return
        if rss is None:  # a zombie: its memory is gone
            return
        samples.append((time.monotonic(), rss))
        stop.wait(every)


def plot(samples: list[tuple[float, float]], r: dict, title: str, path: str, limit_mib: float = 512) -> None:
    from common import OURS, TARGET, plot_axes, save_plot

    fig, (ax,) = plot_axes(1, width=7.5, height=3.8)
    ax.plot([t - r["start"] for t, _ in samples], [m for _, m in samples], color=OURS, linewidth=1.2,
            label="resident set (VmRSS)")
    ax.axhline(limit_mib, color=TARGET, linestyle="--", linewidth=1, label=f"limit {limit_mib:.0f} MiB")
    ax.axhline(r["peak_rss_mib"], color="grey", linestyle=":", linewidth=1,
               label=f"peak (VmHWM) {r['peak_rss_mib']:.0f} MiB")
    ax.axvspan(0, r["end"] - r["start"], color=OURS, alpha=0.08, label=f"assemble, {r['seconds']:.1f} s")
    ax.set_ylim(0, max(limit_mib, r["peak_rss_mib"]) * 1.4)
    ax.set_xlabel("seconds since assemble started (before 0: the process starting, imports)", fontsize=8)
    ax.set_ylabel("MiB", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    save_plot(fig, path, title)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--max-iter", type=int, default=64)
    ap.add_argument("--tile-size", type=int, default=256)
    ap.add_argument("--format", default="png", choices=["png", "msgpack"])
    ap.add_argument("--store", help="store folder (default: a temporary one)")
    ap.add_argument("--plot", help="sample the assembling process's memory and draw it into this PNG")
    ap.add_argument("--sample-ms", type=float, default=20.0, help="sampling interval for --plot (default 20)")
    ap.add_argument("--child", nargs=2, metavar=("STORE", "JOB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    from fractally import jobs, tasks
    from fractally.spec import parse_spec
    from fractally.store import open_store

    store_dir = args.store or tempfile.mkdtemp(prefix="fractally-bench-")
    store = open_store(store_dir)
    spec = parse_spec({"fractal": "mandelbrot", "center": [-0.5, 0], "scale": 3.0, "width": args.size,
                       "height": args.size, "max_iter": args.max_iter, "tile_size": args.tile_size,
                       "format": args.format})
    job, _ = jobs.create(store, spec)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda i: tasks.render_tile(job.tile_task(i), store), jobs.missing_tiles(store, job)))
    print(f"rendered {job.tiles_total} tiles of {spec.width}x{spec.height} in {time.perf_counter() - t0:.1f} s "
          f"into {store_dir}", file=sys.stderr)
    proc = subprocess.Popen([sys.executable, __file__, "--child", store_dir, job.id], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(proc.pid, args.sample_ms / 1000, samples, stop))
    if args.plot:
        sampler.start()
    stdout, stderr = proc.communicate()
    stop.set()
    if args.plot:
        sampler.join()
    if proc.returncode != 0:
        sys.exit(f"the assembling process failed ({proc.returncode}):\n{stderr}")
    r = json.loads(stdout)
    image_rgb_mib = spec.width * spec.height * 3 / 2**20
    arrays_mib = spec.width * spec.height * 8 / 2**20
    print(f"assemble {spec.width}x{spec.height} {spec.format} (tile {spec.tile_size}): "
          f"{r['seconds']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB "
          f"(process baseline {r['baseline_rss_mib']:.0f} MiB); the image is {image_rgb_mib:.0f} MiB as RGB, "
          f"{arrays_mib:.0f} MiB as counts+smooth; result {r['bytes'] / 2**20:.0f} MiB")
    if args.plot:
        plot(samples, r, f"assemble {spec.width}x{spec.height} {spec.format} (tile {spec.tile_size}): peak RSS "
                         f"{r['peak_rss_mib']:.0f} MiB; the image is {image_rgb_mib:.0f} MiB as RGB; "
                         f"sampled every {args.sample_ms:.0f} ms", args.plot)


if __name__ == "__main__":
    main()
