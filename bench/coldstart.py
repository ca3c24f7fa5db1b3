"""Cold start of render_tile: process start → first tile served over HTTP, with and without the
numba cache that the images bake at build time, against a local-folder store and an S3 store, with
the page cache warm and cold.

Each run starts the render_tile image's own command (the CMD of the Dockerfile's render-tile target,
``fractally function render-tile``: gunicorn, with the image's NUMBA_CPU_* target) as a fresh process on a loopback port, with a fresh
store, and POSTs one tile task (256×256, max_iter 256, the default tile) as soon as the port accepts
connections, retrying until it is answered:

* **cache**: the timed part starts with copying a cache prepared by ``python -m fractally.picture.warmup``
  into a fresh folder (what the image's entrypoint does at start, since numba needs a writable
  cache folder), then starts the process;
* **no cache**: an empty cache folder, so the first tile compiles the kernels.

Stores (``--stores``): **local**, a fresh folder; **s3**, as deployed: an S3 store
(``FRACTALLY_STORE_URL=s3://…`` and ``FRACTALLY_S3_ENDPOINT``) on a moto server on 127.0.0.1 (as
``fractally.ops.stack`` and the tests run it), started once before the runs and not timed, a fresh
prefix per run; so the process imports boto3 and builds its client, and the tile is a PUT over HTTP.

Page cache (``--page-cache``): **warm**, as left by the runs before; **cold**: ``sync`` and
``echo 3 > /proc/sys/vm/drop_caches`` right before the timed part (needs root; if the write is
refused, cold runs are skipped and the output says so), so Python, the packages and the numba
cache are read from disk as on a node that has not run the image yet. This drops the page cache of
the whole machine, so other programs running at the time slow down for a while. Runs without the
numba cache are measured with a warm page cache only.

All kinds alternate run by run (the order rotates), median of ``--runs`` each; the target is ≤ 1 s
with the cache.

    .venv/bin/python bench/coldstart.py [--runs 5] [--stores local s3] [--page-cache warm cold]
                                        [--plot coldstart.png] [--json out.json]

``--plot`` draws each kind's median (every run as a dot) against the 1 s target.
"""

from __future__ import annotations

import argparse
import contextlib
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

from bench.common import ROOT, bar_panel, cpu_seconds, plot_axes, save_plot  # noqa: E402
from fractally.ops.stack import free_port  # noqa: E402
from fractally import jobs  # noqa: E402
from fractally.picture.spec import parse_spec  # noqa: E402

DOCKERFILE = ROOT / "Dockerfile"
TARGET = "render-tile"  # the Dockerfile's stage for the render_tile function
TILE_SPEC = {"c": [-0.8, 0.156], "width": 1024, "height": 768, "tile_size": 256, "max_iter": 256}


def image_command() -> tuple[list[str], dict[str, str]]:
    """The render-tile target's CMD and the image's NUMBA_CPU_* environment, read from the Dockerfile."""
    import dockerfile

    commands = list(dockerfile.parse_file(str(DOCKERFILE)))
    args = dict(c.value[0].split("=", 1) for c in commands if c.cmd == "ARG" and "=" in c.value[0])
    env: dict[str, str] = {}
    stage, cmd = None, None
    for c in commands:
        if c.cmd == "FROM":
            stage = c.value[-1] if len(c.value) == 3 and c.value[1].upper() == "AS" else None
        if c.cmd == "ENV":
            for key, value in zip(c.value[::2], c.value[1::2]):
                if key.startswith("NUMBA_CPU"):
                    value = value.strip('"')
                    env[key] = args.get(value[2:-1], "") if value.startswith("${") else value
        if c.cmd == "CMD" and stage == TARGET:
            cmd = list(c.value)
    if cmd is None:
        raise RuntimeError(f"{DOCKERFILE} has no CMD in a stage named {TARGET}")
    return cmd, env


def first_tile(argv: list[str], env: dict[str, str], seed: Path | None, cache: Path, store_env: dict[str, str],
               task: dict, cold: bool = False) -> dict[str, float]:
    """Seconds from start (seed copy included) to listening and to the first tile's answer; ``cold``:
    drop the page cache first (not timed)."""
    port = free_port()
    env = {**env, "HOST": "127.0.0.1", "PORT": str(port), "NUMBA_CACHE_DIR": str(cache), **store_env}
    if cold:
        drop_page_cache()
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
        cpu = cpu_seconds(proc.pid)  # gunicorn's master and worker: what the load of other tenants does not move
        return {"total": done - started, "listening": listening - started, "first_request": done - listening,
                "cpu": cpu}
    finally:
        proc.terminate()
        proc.wait(10)


DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def drop_page_cache() -> None:
    """Write dirty pages out and drop the page cache, dentries and inodes (root only)."""
    os.sync()
    DROP_CACHES.write_text("3\n")


def can_drop_page_cache() -> str | None:
    """None if this process may drop the page cache, else why not."""
    try:
        drop_page_cache()
        return None
    except OSError as err:
        return f"{type(err).__name__}: {err}"


@contextlib.contextmanager
def s3_server(base_env: dict[str, str]):
    """A moto S3 server on a free loopback port with the stack's bucket: yields the store settings a
    function process needs (store URL prefix, endpoint, the stack's fake test credentials)."""
    from fractally.config import PREFIX, Settings
    from fractally.ops.stack import DEFAULT_BUCKET_URL, TEST_S3_CREDENTIALS

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=base_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/moto-api/config", timeout=1).ok:  # moto answers 201
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the moto S3 server did not start")
            time.sleep(0.05)
        env = {PREFIX + "STORE_URL": DEFAULT_BUCKET_URL, PREFIX + "S3_ENDPOINT": url,
               **{PREFIX + k: v for k, v in TEST_S3_CREDENTIALS.items()}}
        Settings.from_env(env).open_store().create_bucket()
        yield env
    finally:
        proc.terminate()
        proc.wait(10)


LABELS = {"cache": "numba cache", "no cache": "no numba cache"}


def kind_name(numba: str, store: str, page: str) -> str:
    return f"{store}, {page} page cache, {LABELS[numba]}"


def plot(results: dict[str, list[dict[str, float]]], numba_cpu: str | None, path: str) -> None:
    fig, (ax,) = plot_axes(1, width=7.4, height=4.2)
    kinds = list(results)
    medians = [statistics.median(r["total"] for r in results[k]) for k in kinds]
    labels = [k.replace(", ", "\n").replace(" page cache", " pages") for k in kinds]
    bar_panel(ax, labels, medians, runs=[[r["total"] for r in results[k]] for k in kinds],
              ours=lambda label: label.endswith("\nnumba cache"), target=1.0, target_label="target ≤ 1 s (cached)",
              ylabel="seconds, process start → first tile served")
    ax.tick_params(axis="x", labelsize=7)
    runs = len(next(iter(results.values())))
    save_plot(fig, path, f"render_tile cold start, local folder vs S3 store (moto on 127.0.0.1), warm vs dropped "
                         f"page cache (tile 256x256, max_iter 256, NUMBA_CPU_NAME={numba_cpu}); median of {runs} runs "
                         f"(dots: every run)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stores", nargs="+", choices=["local", "s3"], default=["local", "s3"])
    parser.add_argument("--page-cache", nargs="+", choices=["warm", "cold"], default=["warm", "cold"])
    parser.add_argument("--plot", help="draw the figures into this PNG")
    parser.add_argument("--json", help="write every run to this file")
    args = parser.parse_args()
    argv, numba_env = image_command()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("FRACTALLY_", "NUMBA_", "AWS_"))}
    base_env.update(numba_env)
    base_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base_env.get('PATH', '')}"
    pages = list(args.page_cache)
    refused = None
    if "cold" in pages:
        refused = can_drop_page_cache()
        if refused:
            pages.remove("cold")
            print(f"cold page cache runs skipped: cannot drop the page cache ({refused})", file=sys.stderr)
    plan = [(n, st, pg) for st in args.stores for pg in pages for n in ("cache", "no cache")
            if n == "cache" or pg == "warm"]  # without the numba cache: warm page cache only
    if not plan:
        print("nothing to measure", file=sys.stderr)
        return 1
    job = jobs.new_job(parse_spec(TILE_SPEC))
    task = job.tile_task(0)
    results: dict[str, list[dict[str, float]]] = {kind_name(*k): [] for k in plan}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp, contextlib.ExitStack() as stack:
        seed = Path(tmp, "baked")
        warm = subprocess.run([sys.executable, "-m", "fractally.picture.warmup", "--verify"],
                              env={**base_env, "NUMBA_CACHE_DIR": str(seed)}, capture_output=True, text=True)
        if warm.returncode != 0:
            print(warm.stdout, warm.stderr, file=sys.stderr)
            return 1
        s3_env = stack.enter_context(s3_server(base_env)) if "s3" in args.stores else {}
        for i in range(args.runs):
            for numba, store, page in plan[i % len(plan):] + plan[:i % len(plan)]:  # rotating order
                run = Path(tmp, f"{numba.replace(' ', '-')}-{store}-{page}-{i}")
                if store == "s3":
                    store_env = {**s3_env, "FRACTALLY_STORE_URL": f"{s3_env['FRACTALLY_STORE_URL']}/{run.name}"}
                else:
                    store_env = {"FRACTALLY_STORE_URL": str(run / "store")}
                results[kind_name(numba, store, page)].append(
                    first_tile(argv, base_env, seed if numba == "cache" else None, run / "numba-cache", store_env,
                               task, cold=page == "cold"))
            load.append(os.getloadavg()[0])
    print(f"render_tile cold start, process start -> first tile served "
          f"(tile 256x256, max_iter 256, NUMBA_CPU_NAME={numba_env.get('NUMBA_CPU_NAME')}; median of {args.runs}; "
          f"load average {min(load):.1f}-{max(load):.1f} during the runs)")
    if refused:
        print(f"(no cold page cache runs: {refused})")
    print("total: wall seconds, process start -> first tile served; CPU: user+system seconds of the process "
          "(gunicorn's master and worker) until then, which other tenants' load moves less")
    print(f"{'kind':45} {'total s':>8} {'listening s':>12} {'first tile s':>13} {'CPU s':>7}   runs (total s)")
    medians, cpus = {}, {}
    for kind, runs in results.items():
        medians[kind] = statistics.median(r["total"] for r in runs)
        cpus[kind] = statistics.median(r["cpu"] for r in runs)
        print(f"{kind:45} {medians[kind]:8.2f} {statistics.median(r['listening'] for r in runs):12.2f} "
              f"{statistics.median(r['first_request'] for r in runs):13.2f} {cpus[kind]:7.2f}   "
              + " ".join(f"{r['total']:.2f}" for r in runs))
    for page in pages:
        if "local" in args.stores and "s3" in args.stores:
            local, s3 = kind_name("cache", "local", page), kind_name("cache", "s3", page)
            pairs = [b["total"] - a["total"] for a, b in zip(results[local], results[s3])]
            print(f"{page} page cache, numba cache: S3 - local = {medians[s3] - medians[local]:+.2f} s "
                  f"(median of the run-by-run differences {statistics.median(pairs):+.2f} s), "
                  f"S3 / local = {medians[s3] / medians[local]:.2f}x; CPU S3 - local = {cpus[s3] - cpus[local]:+.2f} s")
    for kind, value in medians.items():
        if kind.endswith(", " + LABELS["cache"]):
            print(f"target <= 1 s ({kind}): {'met' if value <= 1.0 else 'NOT met'}")
    print(json.dumps({k: round(v, 3) for k, v in medians.items()}))
    print(json.dumps({f"{k} (CPU)": round(v, 3) for k, v in cpus.items()}))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": results, "medians": medians, "load": load}, indent=1))
    if args.plot:
        plot(results, numba_env.get("NUMBA_CPU_NAME"), args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
