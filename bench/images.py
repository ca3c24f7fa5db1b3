"""The images as a cluster runs them: cold start of render-tile, image sizes, build times.

Cold start: ``docker run`` of the render-tile image (read-only root, tmpfs /tmp, uid 10001, no
capabilities, host network, the S3 stand-in as its store) until its first tile is served, i.e. the
first 200 answer to ``POST /`` with a tile task. In the same rounds, alternated, three baselines:
Docker's own share, ``docker run`` of the same image and flags with ``true`` as its command (until
it has exited);
the same command as a host process (no container; the baked cache copied the same way), and the
same image with its entrypoint bypassed, so the baked cache is not copied where numba looks and
every kernel compiles (what the images did before the cache was proved at build time).

    .venv/bin/python bench/images.py --runs 5            # cold start (images from `make images`)
    .venv/bin/python bench/images.py --build             # also: make images from a clean clone, then
                                                         # after a code-only change, then unchanged
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fractally import jobs  # noqa: E402
from fractally.picture.spec import parse_spec  # noqa: E402
from fractally.ops.stack import free_port  # noqa: E402

TAG = "0.1.0"
RENDER_TILE = f"ghcr.io/fractally/render-tile:{TAG}"
S3 = f"fractally/s3-standin:{TAG}"
IMAGES = [*(f"ghcr.io/fractally/{name}:{TAG}" for name in ("api", "render-tile", "assemble")),
          S3, f"fractally/nats-standin:{TAG}"]
CLUSTER_LIKE = ["--read-only", "--tmpfs", "/tmp", "--user", "10001:10001", "--cap-drop", "ALL", "--network", "host"]
SPEC = {"c": [-0.8, 0.156], "width": 256, "height": 256, "tile_size": 256, "max_iter": 200}


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def first_tile(url: str, task: dict, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.post(url, json=task, timeout=60).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"no tile from {url} within {timeout} s")


def store_env(s3_port: int) -> dict[str, str]:
    return {"FRACTALLY_STORE_URL": "s3://fractally/", "FRACTALLY_S3_ENDPOINT": f"http://127.0.0.1:{s3_port}",
            "FRACTALLY_S3_REGION": "us-east-1", "FRACTALLY_S3_ACCESS_KEY": "bench",
            "FRACTALLY_S3_SECRET_KEY": "bench-secret", "HOST": "127.0.0.1"}


def cold_start(way: str, s3_port: int, task: dict, host_cache: Path) -> float:
    """Seconds from starting render-tile ``way`` to its first tile served."""
    port = free_port()
    env = {**store_env(s3_port), "PORT": str(port)}
    url = f"http://127.0.0.1:{port}/"
    if way == "host process":
        cache = Path(tempfile.mkdtemp(prefix="bench-cache-"))
        full = {**{k: v for k, v in os.environ.items() if not k.startswith("FRACTALLY_")}, **env,
                "NUMBA_CACHE_DIR": str(cache), "NUMBA_CPU_NAME": "x86-64-v3", "NUMBA_CPU_FEATURES": ""}
        started = time.perf_counter()
        shutil.copytree(host_cache, cache, dirs_exist_ok=True)  # what the entrypoint does
        proc = subprocess.Popen([str(ROOT / ".venv/bin/fractally"), "function", "render-tile"], env=full,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            first_tile(url, task)
            return time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait()
            shutil.rmtree(cache, ignore_errors=True)
    if way == "docker run true":
        started = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", *CLUSTER_LIKE, "--entrypoint", "true", RENDER_TILE], check=True)
        return time.perf_counter() - started
    name = f"bench-coldstart-{os.getpid()}-{port}"
    argv = ["docker", "run", "--detach", "--rm", "--name", name, *CLUSTER_LIKE]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    if way == "image, cache not copied":
        argv += ["--entrypoint", "fractally", RENDER_TILE, "function", "render-tile"]
    else:
        argv.append(RENDER_TILE)
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    try:
        first_tile(url, task)
        return time.perf_counter() - started
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True)


def measure_cold_start(runs: int) -> dict:
    s3_port = free_port()
    s3 = f"bench-s3-{os.getpid()}"
    data = tempfile.mkdtemp(prefix="bench-s3-")
    os.chmod(data, 0o777)
    docker("run", "--detach", "--rm", "--name", s3, "--network", "host", "--volume", f"{data}:/data", S3,
           "server", "/data", "--address", f"127.0.0.1:{s3_port}")
    host_cache = Path(tempfile.mkdtemp(prefix="bench-baked-"))
    try:
        env = {**os.environ, **store_env(s3_port)}
        subprocess.run([str(ROOT / ".venv/bin/fractally"), "create-bucket"], env=env, check=True, capture_output=True)
        subprocess.run([sys.executable, "-m", "fractally.picture.warmup"], check=True, capture_output=True,
                       env={**os.environ, "NUMBA_CACHE_DIR": str(host_cache), "NUMBA_CPU_NAME": "x86-64-v3",
                            "NUMBA_CPU_FEATURES": ""})
        ways = ["image (as a cluster runs it)", "docker run true", "host process", "image, cache not copied"]
        times: dict[str, list[float]] = {way: [] for way in ways}
        for run in range(runs):
            for way in ways:
                spec = parse_spec({**SPEC, "max_iter": SPEC["max_iter"] + run * len(ways) + ways.index(way)})
                times[way].append(cold_start(way, s3_port, jobs.new_job(spec).tile_task(0), host_cache))
            print(f"round {run + 1}: " + ", ".join(f"{w} {times[w][-1]:.3f} s" for w in ways), file=sys.stderr,
                  flush=True)
    finally:
        subprocess.run(["docker", "rm", "--force", s3], capture_output=True)
        shutil.rmtree(host_cache, ignore_errors=True)
        subprocess.run(["rm", "-rf", data])
    medians = {way: statistics.median(values) for way, values in times.items()}
    return {"runs": runs, "seconds": times, "median": medians,
            "image - docker run true": medians[ways[0]] - medians[ways[1]],
            "image / host process": medians[ways[0]] / medians[ways[2]],
            "cache not copied / image": medians[ways[3]] / medians[ways[0]]}


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure_build() -> dict:
    """make images from a clean clone (our images and the build cache removed; the stand-in base kept and
    timed apart), then after a one-line code change, then with nothing changed."""
    clone = Path(tempfile.mkdtemp(prefix="bench-clone-")) / "repo"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    try:
        subprocess.run(["docker", "rmi", "--force", *IMAGES], capture_output=True)
        subprocess.run(["docker", "image", "prune", "--force"], capture_output=True)
        out = {"venv (make install)": timed(["make", "install"], clone)}
        out["clean clone"] = timed(["make", "images"], clone)
        with open(clone / "fractally" / "cli.py", "a") as f:
            f.write("# a code-only change\n")
        out["after a code-only change"] = timed(["make", "images"], clone)
        out["nothing changed"] = timed(["make", "images"], clone)
    finally:
        shutil.rmtree(clone.parent, ignore_errors=True)
    return out


def sizes() -> dict[str, float]:
    return {image: int(docker("image", "inspect", "--format", "{{.Size}}", image)) / 1e6 for image in IMAGES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--build", action="store_true", help="also time make images from a clean clone")
    args = parser.parse_args()
    report: dict = {"date": time.strftime("%Y-%m-%d"), "load": os.getloadavg()}
    if args.build:
        report["build seconds"] = measure_build()
    report["image MB"] = sizes()
    report["cold start"] = measure_cold_start(args.runs)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
