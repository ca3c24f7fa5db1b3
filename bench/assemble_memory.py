"""Peak memory of assembling a big job: bounded by a band of tiles, not by the image.

Renders every tile of a SIZE x SIZE job into a local store (not measured), then assembles it
``--runs`` times in fresh processes, each time side by side with the way that does not stream:
every tile coloured into one whole RGB image in memory, then written by Pillow's PNG encoder
(``compress_level=1``, its fastest, so the baseline's time is the generous one). Reports each
process's peak RSS (VmHWM) and time, their medians, and the ratios, next to the size of the image
as raw RGB and as counts+smooth in memory.

    .venv/bin/python bench/assemble_memory.py [--size 16384] [--runs 3] [--format png] [--plot memory.png]

``--plot`` also samples both processes' resident set (VmRSS, from this process, every
``--sample-ms`` ms) in the first run and draws them over time against the 512 MiB limit.
The baseline needs about 7 bytes a pixel of memory (7 GiB at 32768x32768); ``--no-baseline`` skips it.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def vm_hwm_mib() -> float:
    """This process's peak resident set (VmHWM). Unlike ru_maxrss it is not inherited from the
    parent across fork+exec, so the parent's numba-sized footprint does not leak into the figure."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(store_dir: str, job_id: str, how: str) -> None:
    """Runs in a fresh process: assemble (``how`` = "ours" or "whole"), then print peak RSS and time as JSON."""
    from fractally import jobs
    from fractally.jobs import tasks
    from fractally.store import open_store

    store = open_store(store_dir)
    rss_before = vm_hwm_mib()
    start = time.monotonic()  # CLOCK_MONOTONIC: the same clock as the parent's samples
    t0 = time.perf_counter()
    if how == "ours":
        result = tasks.assemble(job_id, store)
        status, size = result["status"], result.get("bytes")
    else:
        status, size = "done", assemble_whole(store, jobs.load(store, job_id))
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_rss_mib": vm_hwm_mib(), "baseline_rss_mib": rss_before,
                      "bytes": size, "status": status, "start": start, "end": time.monotonic()}))


def assemble_whole(store: Any, job: Any) -> int:
    """The way without streaming: every tile coloured into one RGB image, then Pillow's PNG encoder.
    Returns the PNG's size (written to a temporary file, removed)."""
    import numpy as np
    from PIL import Image

    from fractally import jobs
    from fractally.picture.codec import decode_tile
    from fractally.picture.colour import colourize
    from fractally.picture.tiling import tiles

    spec = job.spec
    rgb = np.zeros((spec.height, spec.width, 3), np.uint8)
    for t in tiles(spec):
        tile = decode_tile(store.get(jobs.tile_key(job.pixels_hash, t.index)))
        rgb[t.y0:t.y0 + t.height, t.x0:t.x0 + t.width] = colourize(tile.counts, tile.smooth, spec.max_iter,
                                                                  spec.colormap)
    with tempfile.NamedTemporaryFile(suffix=".png") as out:
        Image.fromarray(rgb).save(out, format="PNG", compress_level=1)
        return out.tell()


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


def assemble_in_child(store_dir: str, job_id: str, how: str, sample_every: float | None
                      ) -> tuple[dict, list[tuple[float, float]]]:
    """One assembly in a fresh process: its JSON report, and its VmRSS samples if ``sample_every``."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", store_dir, job_id, how], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_rss, args=(proc.pid, sample_every or 1.0, samples, stop))
    if sample_every:
        sampler.start()
    stdout, stderr = proc.communicate()
    stop.set()
    if sample_every:
        sampler.join()
    if proc.returncode != 0:
        sys.exit(f"the assembling process ({how}) failed ({proc.returncode}):\n{stderr}")
    return json.loads(stdout), samples


#: What each child assembles, for the report and the plot.
WAYS = {"ours": "fractally (tasks.assemble: band by band)", "whole": "whole image in memory + Pillow"}


def plot(samples: dict[str, list[tuple[float, float]]], reports: dict[str, dict], title: str, path: str,
         limit_mib: float = 512) -> None:
    from common import OTHER, OURS, TARGET, plot_axes, save_plot

    fig, axes = plot_axes(len(samples), width=6.0, height=3.8)
    for ax, (how, points), colour in zip(axes, samples.items(), (OURS, OTHER)):
        r = reports[how]
        ax.plot([t - r["start"] for t, _ in points], [m for _, m in points], color=colour, linewidth=1.2,
                label="resident set (VmRSS)")
        ax.axhline(limit_mib, color=TARGET, linestyle="--", linewidth=1, label=f"limit {limit_mib:.0f} MiB")
        ax.axhline(r["peak_rss_mib"], color="grey", linestyle=":", linewidth=1,
                   label=f"peak (VmHWM) {r['peak_rss_mib']:.0f} MiB")
        ax.axvspan(0, r["end"] - r["start"], color=colour, alpha=0.08, label=f"assembly, {r['seconds']:.1f} s")
        ax.set_ylim(0, max(limit_mib, r["peak_rss_mib"]) * 1.4)
        ax.set_title(WAYS[how], fontsize=9)
        ax.set_xlabel("seconds since the assembly started (before 0: the process starting)", fontsize=8)
        ax.set_ylabel("MiB", fontsize=8)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    save_plot(fig, path, title)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--max-iter", type=int, default=64)
    ap.add_argument("--tile-size", type=int, default=256)
    ap.add_argument("--format", default="png", choices=["png", "msgpack"])
    ap.add_argument("--runs", type=int, default=3, help="assemblies of each way, alternated; medians reported")
    ap.add_argument("--no-baseline", action="store_true", help="skip the whole-image baseline (PNG only)")
    ap.add_argument("--store", help="store folder (default: a temporary one)")
    ap.add_argument("--plot", help="sample the first run's memory and draw it into this PNG")
    ap.add_argument("--sample-ms", type=float, default=20.0, help="sampling interval for --plot (default 20)")
    ap.add_argument("--child", nargs=3, metavar=("STORE", "JOB", "HOW"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    from fractally import jobs
    from fractally.jobs import tasks
    from fractally.picture.spec import parse_spec
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
    ways = ["ours"] if args.no_baseline or spec.format != "png" else ["ours", "whole"]
    reports: dict[str, list[dict]] = {how: [] for how in ways}
    samples: dict[str, list[tuple[float, float]]] = {}
    for run in range(args.runs):
        for how in ways if run % 2 == 0 else ways[::-1]:
            store.delete(job.result_key)  # so that every run assembles
            r, points = assemble_in_child(store_dir, job.id, how, args.sample_ms / 1000 if args.plot and run == 0
                                          else None)
            if r["status"] != "done":
                sys.exit(f"the assembly ({how}) ended {r['status']}")
            reports[how].append(r)
            if points:
                samples[how] = points
            print(f"run {run + 1}, {how}: {r['seconds']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    image_rgb_mib = spec.width * spec.height * 3 / 2**20
    arrays_mib = spec.width * spec.height * 8 / 2**20
    print(f"assemble {spec.width}x{spec.height} {spec.format} (tile {spec.tile_size}), median of {args.runs} runs; "
          f"the image is {image_rgb_mib:.0f} MiB as RGB, {arrays_mib:.0f} MiB as counts+smooth")
    med = {how: {k: statistics.median(r[k] for r in runs) for k in ("seconds", "peak_rss_mib", "bytes")}
           for how, runs in reports.items()}
    for how, m in med.items():
        print(f"  {WAYS[how]:45} {m['seconds']:6.1f} s, peak RSS {m['peak_rss_mib']:6.0f} MiB, "
              f"result {m['bytes'] / 2**20:.0f} MiB   (runs: "
              + ", ".join(f"{r['seconds']:.1f} s / {r['peak_rss_mib']:.0f} MiB" for r in reports[how]) + ")")
    if "whole" in med:
        print(f"  ours / whole image: time {med['ours']['seconds'] / med['whole']['seconds']:.2f}x, "
              f"peak RSS {med['ours']['peak_rss_mib'] / med['whole']['peak_rss_mib']:.3f}x")
    store.delete(job.result_key)
    if not args.store:
        shutil.rmtree(store_dir)  # a folder of our own; --store keeps its tiles for the next run
    if args.plot:
        plot(samples, {how: runs[0] for how, runs in reports.items()},
             f"assemble {spec.width}x{spec.height} {spec.format} (tile {spec.tile_size}), first of {args.runs} runs; "
             f"the image is {image_rgb_mib:.0f} MiB as RGB; sampled every {args.sample_ms:.0f} ms", args.plot)


if __name__ == "__main__":
    main()
