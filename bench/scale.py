"""The distributed path at scale: fan-out, store requests, status polls and assembly (docs/scale.md).

Runs the cluster's topology on loopback (``fractally.ops.stack.Stack``: api, render_tile with N gunicorn
workers, assemble) over an S3 test server (moto), optionally behind a proxy that makes it as far away
as a real object store (toxy, bench/proxy/: a delay per request and a bandwidth cap on responses).
Every figure is read off real processes: store requests from the S3 server's request log, memory from
/proc, times from the client's clock; the baseline in the same run is the embedded service.

    .venv/bin/python bench/scale.py throughput --runs 3            # 4,096 and 16,384 tiles: stack, queue, embedded
    .venv/bin/python bench/scale.py fanout                         # invocations/s of one api replica
    .venv/bin/python bench/scale.py status                         # poll latency and reads against tile count
    .venv/bin/python bench/scale.py assembly --max-side 32768      # assembly time and memory up to 1 gigapixel
    .venv/bin/python bench/scale.py critical --runs 5              # a gigapixel's last band, merge and join
    .venv/bin/python bench/scale.py all --plot docs/scale.png --json bench/scale.json
    .venv/bin/python bench/scale.py replot --json bench/scale.json --plot docs/scale.png   # the plot again, from the file

Each part prints a table; ``--json`` keeps the figures for the model in docs/scale.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, embedded_service, median, percentile, plot_axes, save_plot  # noqa: E402
from fractally.ops.stack import TEST_S3_CREDENTIALS, Child, Stack, bound_socket, free_port, gunicorn_argv  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROXY = ROOT / "bench" / "proxy"
BUCKET = "fractally-scale"
TINY = {"fractal": "julia", "c": [-0.8, 0.156], "max_iter": 50, "tile_size": 16, "format": "png"}
#: A real object store as seen from a pod in its region: ~20 ms before the first byte of any request,
#: about 100 MB/s down one connection (S3's figures for small objects in one region).
LATENCY_MS, BANDWIDTH_MBS = 20, 100
REQUEST = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) (/\S*) HTTP/')
COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours some methods in moto's log


def kind(method: str, path: str) -> str:
    """What an S3 request is, from its request line: list, read, write, copy part, delete."""
    if method == "GET":
        return "list" if "list-type=" in path else "read"
    if method == "HEAD":
        return "read"
    if method == "DELETE":
        return "delete"
    if method == "PUT" and "partNumber=" in path:
        return "part"
    return "write"  # PUT an object, POST to start or complete a multipart upload


@dataclass
class S3Server:
    """moto on a loopback port with its request log, and the proxy in front of it when asked."""

    log: Path
    latency_ms: float = 0
    bandwidth_mbs: float = 0
    procs: list[subprocess.Popen] = field(default_factory=list)
    endpoint: str = ""

    def __enter__(self) -> "S3Server":
        port = free_port()
        self.procs.append(subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                           stdout=open(self.log, "wb"), stderr=subprocess.STDOUT))
        self.endpoint = f"http://127.0.0.1:{port}"
        wait_up(self.endpoint + "/moto-api/config")
        if self.latency_ms or self.bandwidth_mbs:
            proxy_port = free_port()
            self.procs.append(subprocess.Popen(
                ["node", str(PROXY / "s3_proxy.js"), str(proxy_port), self.endpoint, str(self.latency_ms),
                 str(self.bandwidth_mbs or 10_000)], cwd=PROXY, stdout=subprocess.DEVNULL))
            self.endpoint = f"http://127.0.0.1:{proxy_port}"
            wait_up(self.endpoint + "/moto-api/config")
        import boto3

        self.client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="x",
                                   aws_secret_access_key="y", region_name="us-east-1")
        self.client.create_bucket(Bucket=BUCKET)
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.terminate()
            p.wait(10)

    def env(self) -> dict[str, str]:
        return {"FRACTALLY_STORE_URL": f"s3://{BUCKET}/data", "FRACTALLY_S3_ENDPOINT": self.endpoint,
                **{"FRACTALLY_" + k: v for k, v in TEST_S3_CREDENTIALS.items()}}

    def mark(self) -> int:
        return self.log.stat().st_size

    def _logged(self, mark: int) -> list[tuple[str, str]]:
        """(method, path) of the bucket's requests logged since ``mark`` (moto logs a line as it answers)."""
        with open(self.log, "rb") as f:
            f.seek(mark)
            text = COLOUR.sub("", f.read().decode(errors="replace"))
        return [(m, p) for m, p in REQUEST.findall(text) if p.startswith(f"/{BUCKET}")]

    def requests_since(self, mark: int) -> Counter[str]:
        return Counter(kind(m, p) for m, p in self._logged(mark))

    def keys_since(self, mark: int, method: str, suffix: str) -> int:
        return sum(1 for m, p in self._logged(mark) if m == method and p.split("?")[0].endswith(suffix))

    def calibrate(self) -> dict[str, float]:
        """What the store costs from here: a small PUT, a small GET, and a 16 MiB GET's rate."""
        c, times = self.client, {"put": [], "get": []}
        for i in range(10):
            t = time.perf_counter()
            c.put_object(Bucket=BUCKET, Key=f"calibrate/{i}", Body=b"x" * 1000)
            times["put"].append(time.perf_counter() - t)
            t = time.perf_counter()
            c.get_object(Bucket=BUCKET, Key=f"calibrate/{i}")["Body"].read()
            times["get"].append(time.perf_counter() - t)
        c.put_object(Bucket=BUCKET, Key="calibrate/big", Body=os.urandom(16 << 20))
        t = time.perf_counter()
        c.get_object(Bucket=BUCKET, Key="calibrate/big")["Body"].read()
        rate = 16 * 1.048576 / (time.perf_counter() - t)
        return {"put_ms": median(times["put"]) * 1e3, "get_ms": median(times["get"]) * 1e3, "get_mbs": rate}


def wait_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def ensure_proxy() -> None:
    """toxy, at the version bench/proxy/package-lock.json pins, installed there from npm once."""
    if not (PROXY / "node_modules" / "toxy").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=PROXY, check=True)


def reference_sha(body: dict) -> str:
    """What ``fractally render`` writes for ``body`` (its code, in this process)."""
    from fractally.picture.compose import render_image
    from fractally.picture.spec import parse_spec

    out = io.BytesIO()
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        render_image(parse_spec(body), out, pool)
    return hashlib.sha256(out.getvalue()).hexdigest()


@dataclass
class Run:
    seconds: float
    polls: list[float]
    assembling: float  # seconds from the first "assembling" poll to "done"
    sha: str
    tiles: int

    @property
    def tiles_per_s(self) -> float:
        return self.tiles / self.seconds


def timed_job(api: str, body: dict, poll: float = 0.05, fetch: bool = True, timeout: float = 3600) -> Run:
    """POST, poll every ``poll`` s (each poll's latency kept) until done; the result's hash."""
    session = requests.Session()
    t0 = time.perf_counter()
    resp = session.post(api + "/v1/renders", json=body, timeout=60)
    resp.raise_for_status()
    job = resp.json()
    lat, assembling = [], None
    while True:
        t = time.perf_counter()
        st = session.get(f"{api}/v1/renders/{job['id']}", timeout=60).json()
        lat.append(time.perf_counter() - t)
        if st["status"] == "assembling" and assembling is None:
            assembling = time.perf_counter()
        if st["status"] in ("done", "failed"):
            done_at = time.perf_counter()
            break
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"job {job['id']} not done in {timeout} s")
        time.sleep(poll)
    seconds = done_at - t0
    if st["status"] != "done":
        raise RuntimeError(f"job failed: {st.get('error')}")
    sha = ""
    if fetch:
        sha = hashlib.sha256(session.get(f"{api}/v1/renders/{job['id']}/result", timeout=600).content).hexdigest()
    return Run(seconds, lat, (done_at - assembling) if assembling else 0.0, sha, st["progress"]["tiles_total"])


def tiles_of(side: int, tile: int = 16) -> int:
    return (side // tile) ** 2


# -- the parts ------------------------------------------------------------------------------------


def throughput(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Tiny tiles (16²) through each path: tiles/s, poll latency, store requests per tile, identical PNG."""
    out: dict[str, Any] = {}
    for side in args.sides:
        body = {**TINY, "width": side, "height": side}
        want = reference_sha(body)
        rows: dict[str, list[Run]] = {}
        requests_per_tile: dict[str, Counter[str]] = {}
        invocations: dict[str, int] = {}
        for run in range(args.runs):  # the paths interleaved, so the machine's load falls on all alike
            with tempfile.TemporaryDirectory() as folder, embedded_service(folder) as api:
                rows.setdefault("embedded", []).append(timed_job(api, body))
            for path, latency in (("stack", 0), ("stack+proxy", args.latency_ms), ("queue", 0)):
                if path == "stack+proxy" and not args.proxy:
                    continue
                with S3Server(logs / f"s3-{path}.log", latency, args.bandwidth_mbs if latency else 0) as s3, \
                        distributed(path, s3, logs, args.workers) as api:
                    mark = s3.mark()
                    rows.setdefault(path, []).append(timed_job(api, body))
                    time.sleep(0.5)  # the last DELETEs of the assembly reach the log
                    requests_per_tile[path] = s3.requests_since(mark)
                    invocations[path] = s3.keys_since(mark, "PUT", ".pack")
        print(f"\n{side}x{side}, {tiles_of(side):,} tiles of 16x16, {args.runs} runs, {args.workers} render workers")
        print(f"{'path':14} {'seconds':>8} {'tiles/s':>8} {'vs embedded':>11} {'poll p50':>9} {'poll p99':>9}"
              f" {'invocations':>11} {'store req/tile':>15} identical")
        base = median([r.seconds for r in rows["embedded"]])
        part: dict[str, Any] = {}
        for path, runs in rows.items():
            secs = median([r.seconds for r in runs])
            polls = [p for r in runs for p in r.polls]
            req = requests_per_tile.get(path)
            per_tile = sum(req.values()) / tiles_of(side) if req else float("nan")
            same = all(r.sha == want for r in runs)
            part[path] = {"seconds": secs, "runs": [r.seconds for r in runs], "tiles_per_s": tiles_of(side) / secs,
                          "ratio": secs / base, "poll_p50_ms": percentile(polls, 50) * 1e3,
                          "poll_p99_ms": percentile(polls, 99) * 1e3, "invocations": invocations.get(path),
                          "requests": dict(req or {}), "requests_per_tile": per_tile, "identical": same}
            print(f"{path:14} {secs:8.2f} {tiles_of(side) / secs:8.0f} {secs / base:10.2f}x"
                  f" {part[path]['poll_p50_ms']:7.1f}ms {part[path]['poll_p99_ms']:7.1f}ms"
                  f" {invocations.get(path, '-')!s:>11} {per_tile:15.4f} {same}")
            if req:
                print(f"{'':14} store requests: {dict(req)}")
        out[str(side)] = part
    return out


@contextlib.contextmanager
def distributed(path: str, s3: S3Server, logs: Path, workers: int, env: dict[str, str] | None = None
                ) -> Iterator[str]:
    """The stack over ``s3``: HTTP invoker (``stack*``) or the queue with ``workers`` worker processes."""
    env = {**s3.env(), **(env or {})}
    if path != "queue":
        with Stack(store_url=env["FRACTALLY_STORE_URL"], render_workers=workers, env=env,
                   log_dir=logs / path) as stack:
            yield stack.urls.api
        return
    from tests.support.queue import nats_server_binary

    port = free_port()
    nats = subprocess.Popen([nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port),
                             "-sd", tempfile.mkdtemp(prefix="nats-")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    env.update({"FRACTALLY_INVOKER": "queue", "FRACTALLY_NATS_URL": f"nats://127.0.0.1:{port}"})
    # As many tasks as the HTTP invoker makes calls for the same workers (twice its calls in flight, two a
    # worker): the api cannot count a queue's workers, so a deployment says it (docs/operations.md).
    env.setdefault("FRACTALLY_BATCHES", str(4 * workers))
    procs: list[subprocess.Popen] = []
    try:
        with Stack(store_url=env["FRACTALLY_STORE_URL"], render_workers=1, env=env, log_dir=logs / path) as stack:
            for i in range(workers):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "fractally.cli", "worker", "--concurrency", "1"], cwd=ROOT,
                    env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                    stderr=open(logs / path / f"worker{i}.log", "wb")))
            time.sleep(3)  # the workers' consumers are bound
            yield stack.urls.api
    finally:
        for p in procs:
            p.terminate()
        nats.terminate()


def fanout(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """Invocations one api replica makes a second, and its CPU per invocation: a 16 x 65,536 image in
    16² tiles is 4,096 tile rows of one tile, so each call is one whole-row batch (a pack and a piece
    written, a tile rendered); many render workers, the store behind the proxy."""
    calls = 4096
    body = {**TINY, "width": 16, "height": 16 * calls}
    out = {}
    with S3Server(logs / "s3-fanout.log", args.latency_ms if args.proxy else 0, args.bandwidth_mbs) as s3:
        for workers in args.fanout_workers:
            env = {"FRACTALLY_BATCHES": str(calls)}
            with Stack(store_url=s3.env()["FRACTALLY_STORE_URL"], render_workers=workers, env={**s3.env(), **env},
                       log_dir=logs / f"fanout-{workers}") as stack:
                api = next(c for c in stack.children if c.name == "api")
                secs, cpu, assembling = [], [], []
                for run in range(args.runs):
                    body = {**body, "c": [-0.8, 0.156 + run * 1e-9 + workers * 1e-6]}  # a new picture each run
                    mark, cpu0 = s3.mark(), cpu_seconds(api.proc.pid)
                    run_ = timed_job(stack.urls.api, body, fetch=False)
                    secs.append(run_.seconds)
                    assembling.append(run_.assembling)
                    cpu.append(cpu_seconds(api.proc.pid) - cpu0)
                    assert s3.keys_since(mark, "PUT", ".pack") == calls, "one pack a call"
            row = {"seconds": median(secs), "invocations_per_s": calls / median(secs), "runs": secs,
                   "api_cpu_ms_per_invocation": median(cpu) / calls * 1e3, "in_flight": 2 * workers,
                   "assembling_s": median(assembling)}
            out[str(workers)] = row
            print(f"{workers:3} render workers, {2 * workers} calls in flight: {calls:,} calls in {row['seconds']:.2f} s"
                  f" = {row['invocations_per_s']:.0f} invocations/s; api CPU {row['api_cpu_ms_per_invocation']:.2f} ms"
                  f" a call; assembling {row['assembling_s']:.2f} s")
    return out


def publish(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """The queue invoker's dispatch cost per task: a 1-gigapixel job's 16,384 tiles published as
    1,024 / 2,048 / 4,096 tasks to a JetStream on loopback (wall and CPU of this process, which is
    what an api replica spends); the tasks are not consumed."""
    from fractally import jobs
    from fractally.config import Settings
    from fractally.jobs.queue import QueueInvoker
    from fractally.picture.spec import parse_spec
    from fractally.store.local import LocalStore
    from tests.support.queue import nats_server_binary

    port = free_port()
    nats = subprocess.Popen([nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port),
                             "-sd", tempfile.mkdtemp(prefix="nats-")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    out = {}
    try:
        time.sleep(1)
        spec = parse_spec({**TINY, "width": 32768, "height": 32768, "tile_size": 256})
        for tasks in (1024, 2048, 4096):
            walls, cpus = [], []
            for run in range(args.runs):
                settings = Settings(store_url=str(logs / "publish-store"), invoker="queue",
                                    nats_url=f"nats://127.0.0.1:{port}", nats_stream=f"P{tasks}R{run}",
                                    nats_subject=f"p{tasks}r{run}", batches=tasks, workers=1)
                invoker = QueueInvoker(LocalStore(settings.store_url), settings)
                try:
                    job = jobs.new_job(spec)
                    invoker.is_active(job.id)  # connected, streams made: not part of the dispatch
                    w, c = time.perf_counter(), time.process_time()
                    assert invoker.dispatch(job, list(range(job.tiles_total)))
                    walls.append(time.perf_counter() - w)
                    cpus.append(time.process_time() - c)
                finally:
                    invoker.close()
            row = {"wall_s": median(walls), "cpu_ms_per_task": median(cpus) / tasks * 1e3,
                   "wall_ms_per_task": median(walls) / tasks * 1e3}
            out[str(tasks)] = row
            print(f"{tasks:5,} tasks: dispatched in {row['wall_s']:.3f} s, {row['wall_ms_per_task']:.3f} ms wall and"
                  f" {row['cpu_ms_per_task']:.3f} ms CPU a task")
    finally:
        nats.terminate()
    return out


def status(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """A poll's latency and store reads against tile count, on the replica that runs the job and on one
    that does not, with the job held mid-way (render_tile stopped) so nothing else touches the store."""
    out = {}
    with S3Server(logs / "s3-status.log", args.latency_ms if args.proxy else 0, args.bandwidth_mbs) as s3:
        for side in args.status_sides:
            body = {**TINY, "width": side, "height": side}
            with Stack(store_url=s3.env()["FRACTALLY_STORE_URL"], render_workers=2, env=s3.env(),
                       log_dir=logs / f"status-{side}") as stack:
                api = stack.urls.api
                render = next(c for c in stack.children if c.name == "render_tile")
                job = requests.post(api + "/v1/renders", json=body, timeout=60).json()["id"]
                while requests.get(f"{api}/v1/renders/{job}", timeout=60).json()["progress"]["tiles_done"] == 0:
                    time.sleep(0.05)
                os.killpg(render.proc.pid, signal.SIGSTOP)
                try:
                    other = second_api(stack, logs / f"status-{side}")
                    row = {}
                    for name, url in (("owner", api), ("other", other.url)):
                        requests.get(f"{url}/v1/renders/{job}", timeout=60)  # its manifest, once
                        mark, lat = s3.mark(), []
                        for _ in range(args.polls):
                            t = time.perf_counter()
                            st = requests.get(f"{url}/v1/renders/{job}", timeout=60).json()
                            lat.append(time.perf_counter() - t)
                        time.sleep(0.3)
                        reads = s3.requests_since(mark)
                        row[name] = {"p50_ms": percentile(lat, 50) * 1e3, "p99_ms": percentile(lat, 99) * 1e3,
                                     "reads_per_poll": (reads["read"] + reads["list"]) / args.polls,
                                     "requests": dict(reads), "status": st["status"]}
                    other.stop()
                finally:
                    os.killpg(render.proc.pid, signal.SIGCONT)
            out[str(side)] = row
            print(f"{tiles_of(side):7,} tiles: " + "; ".join(
                f"{n} p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms, {r['reads_per_poll']:.2f} reads/poll"
                for n, r in row.items()))
    return out


def second_api(stack: Stack, logs: Path) -> Child:
    """Another api replica over the same store and functions (it did not start the job)."""
    api = next(c for c in stack.children if c.name == "api")
    sock = bound_socket()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        argv = gunicorn_argv("functions.api.app:create_app()", sock.fileno(), threads=8)
        child = Child("api2", argv, {**api.env, "FRACTALLY_PUBLIC_URL": url}, url, log_path=logs / "api2.log",
                      pass_fds=(sock.fileno(),), cwd=api.cwd).start()
    finally:
        sock.close()
    child.wait_healthy(time.monotonic() + 120)
    return child


def peak_rss_mb(child: Child) -> float:
    """The largest peak resident size among a server's processes (gunicorn's workers), in MB."""
    pids, todo = [], [child.proc.pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        with contextlib.suppress(FileNotFoundError):
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    peaks = []
    for p in pids:
        with contextlib.suppress(FileNotFoundError):
            m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text())
            peaks.append(int(m.group(1)) / 1e3 if m else 0.0)
    return max(peaks)


def assembly(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """A light view in 256² tiles at growing sizes, up to 32768² (1.07 gigapixels): total time, the
    assembling phase, the assembler's and the render workers' peak memory, result size and requests."""
    out = {}
    with S3Server(logs / "s3-assembly.log", args.latency_ms if args.proxy else 0, args.bandwidth_mbs) as s3:
        for side in [s for s in args.assembly_sides if s <= args.max_side]:
            body = {**TINY, "width": side, "height": side, "tile_size": 256, "max_iter": 50}
            rows = side // 256
            env = {"FRACTALLY_BATCHES": str(2 * rows)}  # every tile row in two halves: band calls, then the join
            with Stack(store_url=s3.env()["FRACTALLY_STORE_URL"], render_workers=2, env={**s3.env(), **env},
                       log_dir=logs / f"assembly-{side}") as stack:
                mark = s3.mark()
                run = timed_job(stack.urls.api, body, poll=0.1, fetch=side <= args.check_side)
                time.sleep(0.5)
                req = s3.requests_since(mark)
                procs = {c.name: c for c in stack.children}
                row = {"pixels": side * side, "seconds": run.seconds, "assembling_s": run.assembling,
                       "assemble_peak_mb": peak_rss_mb(procs["assemble"]),
                       "render_peak_mb": peak_rss_mb(procs["render_tile"]), "requests": dict(req),
                       "result_mb": size_of_result(s3) / 1e6}
            if side <= args.check_side:
                row["identical"] = run.sha == reference_sha(body)
            out[str(side)] = row
            print(f"{side}x{side} ({side * side / 1e6:,.0f} Mpx): {run.seconds:.1f} s, assembling {run.assembling:.2f} s,"
                  f" assembler peak {row['assemble_peak_mb']:.0f} MB, render worker peak {row['render_peak_mb']:.0f} MB,"
                  f" result {row['result_mb']:.0f} MB, requests {dict(req)}"
                  + (f", identical {row['identical']}" if "identical" in row else ""))
    return out


GIGAPIXEL = {**TINY, "width": 32768, "height": 32768, "tile_size": 256}


class OperationTimes:
    """Seconds each S3 operation of a client takes, by operation name (botocore's call events):
    which steps of a join are the store's own work (moto's is not S3's) and which are ours."""

    def __init__(self, client: Any) -> None:
        self.seconds: dict[str, list[float]] = {}
        self.timeline: list[tuple[str, float, float]] = []  # (operation, start, end), perf_counter
        self._started: dict[int, float] = {}
        client.meta.events.register("before-call.s3", self._before)
        client.meta.events.register("after-call.s3", self._after)

    def _before(self, **_: Any) -> None:
        import threading
        self._started[threading.get_ident()] = time.perf_counter()

    def _after(self, model: Any, **_: Any) -> None:
        import threading
        started = self._started.pop(threading.get_ident(), None)
        if started is not None:
            self.seconds.setdefault(model.name, []).append(time.perf_counter() - started)
            self.timeline.append((model.name, started, time.perf_counter()))

    def show(self, since: float) -> str:
        """The operations from ``since`` on, one line each: start and end in ms, the operation."""
        return "\n".join(f"  {(a - since) * 1e3:7.1f} {(b - since) * 1e3:7.1f}  {name}"
                         for name, a, b in sorted(self.timeline, key=lambda x: x[1]) if a >= since)


def critical(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    """What a 1-gigapixel job (32768² in 256² tiles, PNG: 128 rows of 128 tiles, each row in 16 batches
    of 8 tiles, as the model cuts it) does after its last tile is computed, timed step by step in this
    process against the store behind the proxy, as both invokers do it: the last batch's writes (pack,
    row part), then the final assembly (queued by the task's done marker, or called by the HTTP
    invoker), which makes the last row's band from its row parts and joins the pieces. Up to the
    result written: the cleanup after it is not waited for (the status says done once it exists).

    The other rows' pieces are encoded here for real and stored as band calls store them, merging as
    they go ("merged"), or not ("unmerged": as before merging existed); their packs are stand-ins with
    the right names (listed, never read: their pieces cover them)."""
    from fractally import jobs
    from fractally.config import Settings
    from fractally.jobs import pieces, tasks
    from fractally.picture.spec import parse_spec
    from fractally.picture.tiling import band, grid, render_tile_arrays

    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d")}
    with S3Server(logs / "s3-critical.log", args.latency_ms if args.proxy else 0, args.bandwidth_mbs) as s3:
        store = Settings.from_env(s3.env()).open_store()
        spec = parse_spec(GIGAPIXEL)
        job, _ = jobs.create(store, spec)
        rows, cols = grid(spec)
        per = cols // 16
        last_row = [job.batch_task((rows - 1) * cols + k * per, (rows - 1) * cols + (k + 1) * per) for k in range(16)]
        t = time.perf_counter()
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            row_pieces = [pieces.encode(spec, r, [list(pool.map(lambda t_: render_tile_arrays(spec, t_), band(spec, r)))], pool)
                          for r in range(rows - 1)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda task: store.put(jobs.pack_key(job.pixels_hash, task["first"], task["first"] + task["count"]), b""),
                          [job.batch_task(r * cols + k * per, r * cols + (k + 1) * per) for r in range(rows - 1) for k in range(16)]))
        print(f"{rows - 1} rows encoded in {time.perf_counter() - t:.0f} s")

        def stage() -> list[float]:
            """Every row but the last stored as band calls store them (merging as they go), and 15 of
            the last row's 16 batches: the moment before the job's last task ends. The merges' times."""
            store.delete_many([k for k in store.list(jobs.job_prefix(job.id)) if k != jobs.manifest_key(job.id)])
            merges = []
            for piece in row_pieces:
                pieces.store_piece(store, job.id, piece)
                m0 = time.perf_counter()
                if pieces.merge_near(store, job, piece.first) is not None:
                    merges.append(time.perf_counter() - m0)
            for task in last_row[:-1]:
                tasks.render_batch(task, store)
            return merges

        steps: dict[str, list[float]] = {}
        minimum = store.join_part_minimum
        for _ in range(args.runs):
            for path in ("merged", "unmerged"):
                store.join_part_minimum = 0 if path == "unmerged" else minimum
                merges = stage()
                steps.setdefault("merge", []).extend(merges)
                t0 = time.perf_counter()
                rendered = tasks.render_batch(last_row[-1], store)
                t2 = time.perf_counter()
                timed = OperationTimes(store.client)
                made = tasks.assemble(job.id, store)
                if args.timeline:
                    print(f"{path}: the final assembly's store requests, ms from its start\n{timed.show(t2)}")
                result_at = t2 + made["result_after"]
                copies = [(a, b) for op, a, b in timed.timeline if op == "UploadPartCopy"]
                for name, seconds in {"batch_writes": t2 - t0 - rendered["seconds"]["render"],
                                      "assembly": made["result_after"],
                                      # the store's own work: copying pieces in place, completing the upload
                                      "copies": max(b for _, b in copies) - min(a for a, _ in copies) if copies else 0.0,
                                      "complete": sum(timed.seconds.get("CompleteMultipartUpload", [])),
                                      "overhead": result_at - t0 - rendered["seconds"]["render"]}.items():
                    steps.setdefault(f"{path}_{name}", []).append(seconds)
                out[f"{path}_pieces_joined"] = made["pieces"]
                sha = hashlib.sha256(store.get(job.result_key)).hexdigest()
                out.setdefault("result_sha256", set()).add(sha)
                print(f"{path}: overhead {steps[f'{path}_overhead'][-1]:.3f} s"
                      f" ({', '.join(f'{k[len(path) + 1:]} {v[-1]:.3f}' for k, v in steps.items() if k.startswith(path))})")
        out["result_mb"] = len(store.get(job.result_key)) / 1e6
    out.update({k: median(v) for k, v in steps.items()}, steps=steps, merges_per_job=len(steps["merge"]) // args.runs,
               identical_every_run=len(out.pop("result_sha256")) == 1)
    print(f"median overhead after the last tile: {out['merged_overhead']:.3f} s (pieces unmerged {out['unmerged_overhead']:.3f} s);"
          f" {out['merges_per_job']} merges of {out['merge']:.3f} s; the same result every run: {out['identical_every_run']}")
    return out


def size_of_result(s3: S3Server) -> int:
    """The newest result object's size (the job just run)."""
    pages = s3.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="data/jobs/")
    results = [o for p in pages for o in p.get("Contents", []) if "/result." in o["Key"]]
    return max(results, key=lambda o: o["LastModified"])["Size"] if results else 0


def plot(figures: dict[str, Any], path: str) -> None:
    panels = [k for k in ("throughput", "status", "assembly", "critical") if k in figures]
    fig, axes = plot_axes(len(panels), width=4.6)
    for ax, name in zip(axes, panels):
        data = figures[name]
        if name == "throughput":
            side = max(data, key=int)
            labels = list(data[side])
            ax.bar(labels, [data[side][p]["tiles_per_s"] for p in labels], color="#1b5f93")
            for i, p in enumerate(labels):
                ax.annotate(f"{data[side][p]['tiles_per_s']:,.0f}", (i, data[side][p]["tiles_per_s"]),
                            ha="center", va="bottom", fontsize=7)
            ax.axhline(1000, color="#c0392b", linestyle="--", linewidth=1)
            ax.set_title(f"{tiles_of(int(side)):,} tiles of 16²: tiles/s", fontsize=9)
        elif name == "status":
            tiles = [tiles_of(int(s)) for s in data]
            for who, style in (("owner", "o-"), ("other", "s-")):
                ax.plot(tiles, [data[s][who]["p99_ms"] for s in data], style, label=f"{who} replica p99")
            ax.set_xscale("log")
            ax.axhline(100, color="#c0392b", linestyle="--", linewidth=1)
            ax.set_xlabel("tiles in the job", fontsize=8)
            ax.set_ylabel("poll latency, ms", fontsize=8)
            ax2 = ax.twinx()
            ax2.plot(tiles, [data[s]["other"]["reads_per_poll"] for s in data], "k:", label="reads/poll (other)")
            ax2.set_ylim(0, 6)
            ax2.set_ylabel("store reads per poll", fontsize=8)
            ax.legend(fontsize=7, loc="upper left")
            ax.set_title("status poll against tile count", fontsize=9)
        elif name == "critical":
            ways = ["unmerged", "merged"]
            store_side = [data[f"{w}_copies"] + data[f"{w}_complete"] for w in ways]
            ours = [data[f"{w}_overhead"] - st for w, st in zip(ways, store_side)]
            ax.barh(ways, ours, height=0.4, color="#1b5f93", label="ours: writes, listings, last row, reads, parts")
            ax.barh(ways, [data[f"{w}_copies"] for w in ways], height=0.4, left=ours, color="#7fb3d5",
                    label="store (moto): copies in place")
            ax.barh(ways, [data[f"{w}_complete"] for w in ways], height=0.4,
                    left=[o + data[f"{w}_copies"] for o, w in zip(ours, ways)], color="#d5dbdb",
                    label="store (moto): completing the upload")
            for i, w in enumerate(ways):
                ax.annotate(f"{data[f'{w}_overhead']:.2f} s", (data[f"{w}_overhead"], i), va="center", fontsize=7)
            ax.axvline(2.0, color="#c0392b", linestyle="--", linewidth=1, label="2 s: the model's whole overhead")
            ax.set_xlabel("seconds after the last tile, until the result is written", fontsize=8)
            ax.set_xlim(0, max(3.0, max(data[f"{w}_overhead"] for w in ways) * 1.6))
            ax.legend(fontsize=6, loc="center right")
            ax.set_title("1-gigapixel PNG: after its last tile (median)", fontsize=9)
        else:
            px = [data[s]["pixels"] / 1e6 for s in data]
            ax.plot(px, [data[s]["assembling_s"] for s in data], "o-", label="assembling phase, s")
            ax.plot(px, [data[s]["seconds"] for s in data], "s--", label="whole job, s")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("megapixels", fontsize=8)
            ax2 = ax.twinx()
            ax2.plot(px, [data[s]["assemble_peak_mb"] for s in data], "k:", label="assembler peak MB")
            ax2.set_ylabel("assembler peak RSS, MB", fontsize=8)
            ax2.set_ylim(0, max(400, max(data[s]["assemble_peak_mb"] for s in data) * 1.3))
            ax.legend(fontsize=7, loc="upper left")
            ax2.legend(fontsize=7, loc="lower right")
            ax.set_title("assembly against image size (PNG)", fontsize=9)
    save_plot(fig, path, "The distributed path on loopback: moto S3" + (" behind a latency proxy" if
                                                                        figures.get("proxy") else ""))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["throughput", "fanout", "publish", "status", "assembly", "critical", "all", "replot"],
                   help="replot: run nothing, draw --plot from the figures in --json")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="render_tile workers (or queue workers)")
    p.add_argument("--sides", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--fanout-workers", type=int, nargs="+", default=[2, 8, 32])
    p.add_argument("--status-sides", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    p.add_argument("--polls", type=int, default=50)
    p.add_argument("--assembly-sides", type=int, nargs="+", default=[4096, 8192, 16384, 32768])
    p.add_argument("--max-side", type=int, default=32768)
    p.add_argument("--check-side", type=int, default=8192, help="compare results with fractally render up to here")
    p.add_argument("--no-proxy", dest="proxy", action="store_false",
                   help="talk to moto directly (default: also through the latency proxy where it says so)")
    p.add_argument("--latency-ms", type=float, default=LATENCY_MS)
    p.add_argument("--bandwidth-mbs", type=float, default=BANDWIDTH_MBS)
    p.add_argument("--timeline", action="store_true", help="critical: print the final assembly's store requests")
    p.add_argument("--plot")
    p.add_argument("--json")
    args = p.parse_args()
    if args.part == "replot":
        if not (args.json and args.plot):
            p.error("replot needs --json (the figures) and --plot (the picture)")
        plot(json.loads(Path(args.json).read_text()), args.plot)
        return 0
    if args.proxy:
        ensure_proxy()
    # Every process of the run loads the kernels from one cache, compiled here first: otherwise a queue
    # worker that starts without one compiles for a minute inside the timed job (as make test does it).
    os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba-cache"))
    subprocess.run([sys.executable, "-m", "fractally.picture.warmup"], check=True, capture_output=True)
    logs = Path(tempfile.mkdtemp(prefix="scale-"))
    print(f"logs: {logs}; load average {os.getloadavg()[0]:.1f}")
    figures: dict[str, Any] = {"proxy": args.proxy, "latency_ms": args.latency_ms, "bandwidth_mbs": args.bandwidth_mbs,
                               "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    if args.proxy:
        with S3Server(logs / "s3-calibrate.log", args.latency_ms, args.bandwidth_mbs) as s3:
            figures["store"] = s3.calibrate()
        print("store through the proxy:", {k: round(v, 1) for k, v in figures["store"].items()})
    parts = ["throughput", "fanout", "publish", "status", "assembly", "critical"] if args.part == "all" else [args.part]
    for part in parts:
        print(f"\n== {part}")
        figures[part] = globals()[part](args, logs)
    figures["load_after"] = os.getloadavg()[0]
    if args.json:  # parts run now replace theirs; the others' figures are kept
        kept = json.loads(Path(args.json).read_text()) if Path(args.json).exists() else {}
        figures = {**kept, **figures}
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    if args.plot:  # with --json, every part it holds
        plot(figures, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
