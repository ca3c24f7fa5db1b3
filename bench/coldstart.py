"""Cold start of render_tile: process start → first tile served over HTTP, with and without the
numba cache that the images bake at build time.

Each run starts the render_tile image's own command (the CMD of functions/render_tile/Dockerfile,
gunicorn, with the image's NUMBA_CPU_* target) as a fresh process on a loopback port, with a fresh
store folder, and POSTs one tile task (256×256, max_iter 256, the default tile) as soon as the
port accepts connections, retrying until it is answered:

* **cache**: the timed part starts with copying a cache prepared by ``python -m fractally.warmup``
  into a fresh folder (what the image's entrypoint does at start, since numba needs a writable
  cache folder), then starts the process;
* **no cache**: an empty cache folder, so the first tile compiles the kernels.

The two kinds alternate, median of ``--runs`` each; the target is ≤ 1 s with the cache.

    .venv/bin/python bench/coldstart.py [--runs 5] [--plot coldstart.png]

``--plot`` draws the two kinds' medians (every run as a dot) against the 1 s target.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, bar_panel, free_port, plot_axes, save_plot  # noqa: E402
from fractally import jobs  # noqa: E402
from fractally.spec import parse_spec  # noqa: E402

DOCKERFILE = ROOT / "functions" / "render_tile" / "Dockerfile"
TILE_SPEC = {"c": [-0.8, 0.156], "width": 1024, "height": 768, "tile_size": 256, "max_iter": 256}


def image_command() -> tuple[list[str], dict[str, str]]:
    """The image's CMD and its NUMBA_CPU_* environment, read from the Dockerfile."""
    import dockerfile

    commands = list(dockerfile.parse_file(str(DOCKERFILE)))
    args = dict(c.value[0].split("=", 1) for c in commands if c.cmd == "ARG" and "=" in c.value[0])
    env: dict[str, str] = {}
    for c in commands:
        if c.cmd == "ENV":
            for key, value in zip(c.value[::2], c.value[1::2]):
                if key.startswith("NUMBA_CPU"):
                    value = value.strip('"')
                    env[key] = args.get(value[2:-1], "") if value.startswith("${") else value
    (cmd,) = [c for c in commands if c.cmd == "CMD"]
    return list(cmd.value), env


def first_tile(argv: list[str], env: dict[str, str], seed: Path | None, cache: Path, store: Path,
               task: dict) -> dict[str, float]:
    """Seconds from start (seed copy included) to listening and to the first tile's answer."""
    port = free_port()
    env = {**env, "PORT": str(port), "GUNICORN_CMD_ARGS": f"--bind=127.0.0.1:{port}",
           "NUMBA_CACHE_DIR": str(cache), "FRACTALLY_STORE_URL": str(store)}
    started = time.perf_counter()
    if seed is not None:
        shutil.copytree(seed, cache)
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:  # gunicorn accepting connections
            if proc.poll() is not None:
                raise RuntimeError(f"render_tile exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.005)
        listening = time.perf_counter()
        response = requests.post(f"http://127.0.0.1:{port}/", json=task, timeout=120)
        response.raise_for_status()
        assert response.json()["cached"] is False
        done = time.perf_counter()
        return {"total": done - started, "listening": listening - started, "first_request": done - listening}
    finally:
        proc.terminate()
        proc.wait(10)


def plot(results: dict[str, list[dict[str, float]]], numba_cpu: str | None, path: str) -> None:
    fig, (ax,) = plot_axes(1, width=5.2, height=3.8)
    labels = {"cache": "numba cache baked\n(as in the image)", "no cache": "no numba cache\n(compiles)"}
    medians = {kind: statistics.median(r["total"] for r in runs) for kind, runs in results.items()}
    bar_panel(ax, [labels[k] for k in results], list(medians.values()),
              runs=[[r["total"] for r in runs] for runs in results.values()],
              ours=lambda label: label.startswith("numba cache baked"), target=1.0, target_label="target ≤ 1 s (cached)",
              ylabel="seconds, process start → first tile served")
    ax.set_title(" · ".join(f"{k}: listening {statistics.median(r['listening'] for r in v):.2f} s + first tile "
                            f"{statistics.median(r['first_request'] for r in v):.2f} s" for k, v in results.items()),
                 fontsize=7)
    save_plot(fig, path, f"render_tile cold start (tile 256x256, max_iter 256, NUMBA_CPU_NAME={numba_cpu}); "
                         f"median of {len(results['cache'])} runs (dots: every run)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plot", help="draw the figures into this PNG")
    args = parser.parse_args()
    argv, numba_env = image_command()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("FRACTALLY_", "NUMBA_"))}
    base_env.update(numba_env)
    base_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base_env.get('PATH', '')}"
    job = jobs.new_job(parse_spec(TILE_SPEC))
    task = job.tile_task(0)
    results: dict[str, list[dict[str, float]]] = {"cache": [], "no cache": []}
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        seed = Path(tmp, "baked")
        warm = subprocess.run([sys.executable, "-m", "fractally.warmup", "--verify"],
                              env={**base_env, "NUMBA_CACHE_DIR": str(seed)}, capture_output=True, text=True)
        if warm.returncode != 0:
            print(warm.stdout, warm.stderr, file=sys.stderr)
            return 1
        for i in range(args.runs):
            for kind in results:
                run = Path(tmp, f"{kind.replace(' ', '-')}-{i}")
                results[kind].append(first_tile(argv, base_env, seed if kind == "cache" else None,
                                                run / "numba-cache", run / "store", task))
    print(f"render_tile cold start, process start -> first tile served "
          f"(tile 256x256, max_iter 256, NUMBA_CPU_NAME={numba_env.get('NUMBA_CPU_NAME')}; median of {args.runs})")
    print(f"{'numba cache':12} {'total s':>8} {'listening s':>12} {'first tile s':>13}   runs (total s)")
    medians = {}
    for kind, runs in results.items():
        medians[kind] = statistics.median(r["total"] for r in runs)
        print(f"{kind:12} {medians[kind]:8.2f} {statistics.median(r['listening'] for r in runs):12.2f} "
              f"{statistics.median(r['first_request'] for r in runs):13.2f}   "
              + " ".join(f"{r['total']:.2f}" for r in runs))
    print(f"no cache / cache: {medians['no cache'] / medians['cache']:.1f}x; "
          f"target <= 1 s with the cache: {'met' if medians['cache'] <= 1.0 else 'NOT met'}")
    print(json.dumps({k: round(v, 3) for k, v in medians.items()}))
    if args.plot:
        plot(results, numba_env.get("NUMBA_CPU_NAME"), args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
