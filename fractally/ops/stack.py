"""Multi-process mode: every function as its own server on loopback ports, as on a cluster.

``fractally stack`` (and the tests and benchmarks, through ``Stack``) starts

* an S3-compatible test server (moto) and its bucket, unless a store URL is given,
* render_tile under gunicorn with N sync workers (one per core by default),
* assemble under gunicorn,
* the api under gunicorn (gthread) with the HTTP invoker pointed at the two functions,

waits until each answers ``/healthz``, and stops them all together. Every process is
configured only through ``FRACTALLY_*`` variables (``Settings.from_env``), exactly as a
Knative Service or an OpenFaaS function would be, so this is the distributed system on
one machine.

Ports: gunicorn gets a socket this process has already bound (``--bind fd://N``), so
there is no window in which another program can take the port; moto's CLI only takes
a port number, so it gets a free one and is retried on another if it loses the race.
Children run in their own process group (one signal reaches a gunicorn master and its
workers) and, on Linux, receive SIGTERM if the thread that started them dies, so a
killed test run leaves no servers behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator, Mapping

from fractally.config import PREFIX, Settings
from fractally.store import ObjectStore

LOOPBACK = "127.0.0.1"
#: Where the function apps live: next to the package in a source checkout (they are not installed).
SOURCE_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUCKET_URL = "s3://fractally/data"
#: Fake credentials for the local S3 test server (moto accepts any); never real ones.
TEST_S3_CREDENTIALS = {"S3_ACCESS_KEY": "fractally-local", "S3_SECRET_KEY": "fractally-local-secret",
                       "S3_REGION": "us-east-1"}
FUNCTION_TIMEOUT = 300  # seconds a sync worker may spend on one call (matches HttpInvoker's timeout)


class StackError(RuntimeError):
    """A process of the stack did not start or died; the message says which and why."""


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (for programs that only take a number; retry on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def bound_socket(host: str = LOOPBACK, port: int = 0) -> socket.socket:
    """A listening socket to hand to gunicorn as ``fd://N``: the port is ours from now on."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(2048)
    except OSError:
        s.close()
        raise
    return s


def _listen(name: str, port: int) -> socket.socket:
    try:
        return bound_socket(port=port)
    except OSError as err:
        raise StackError(f"{name} cannot listen on {LOOPBACK}:{port} ({err.strerror or err})") from None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM this child when the thread that started it exits (no orphaned servers)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """One server process: started in its own process group, health-checked, stopped with its workers."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], url: str, *,
                 health_path: str = "/healthz", log_path: Path | None = None,
                 pass_fds: tuple[int, ...] = (), cwd: Path | None = None, die_with_parent: bool = True,
                 quiet: bool = False) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.url = url
        self.health_path = health_path
        self.log_path = log_path
        self.pass_fds = pass_fds
        self.cwd = cwd
        self.die_with_parent = die_with_parent
        self.quiet = quiet  # without a log file: drop the output instead of sharing the terminal
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> "Child":
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")
        linux = sys.platform.startswith("linux")
        out = self._log if self._log is not None else (subprocess.DEVNULL if self.quiet else None)
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT if out is not None else None,
            pass_fds=self.pass_fds, start_new_session=True,
            preexec_fn=_die_with_parent if (linux and self.die_with_parent) else None,
        )
        return self

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join("    " + line for line in tail)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.health_path, timeout=2) as resp:
                return 200 <= resp.status < 300
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_healthy(self, deadline: float) -> None:
        """Block until ``GET health_path`` answers 200; ``StackError`` if the process dies or time runs out."""
        while True:
            if not self.alive():
                raise StackError(f"{self.name} exited with code {self.returncode} while starting"
                                 + (f"; its log ({self.log_path}) ends with:\n{self.log_tail()}" if self.log_path else ""))
            if self.healthy():
                return
            if time.monotonic() > deadline:
                raise StackError(f"{self.name} did not answer {self.url}{self.health_path} in time")
            time.sleep(0.1)

    def stop_signal(self) -> None:
        """Ask the whole process group (a gunicorn master and its workers) to shut down."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)  # its own group: pgid == pid

    def stop_wait(self, deadline: float) -> None:
        """Wait for the exit; SIGKILL the group at ``deadline`` (the leader is not reaped yet, so the id is ours)."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_signal()
        self.stop_wait(time.monotonic() + timeout)


def start_with_free_port(make: Callable[[int], Child], deadline: float, attempts: int = 3) -> Child:
    """Start ``make(port)`` on a free port and wait for health; on a lost port race, try another port."""
    for attempt in range(attempts):
        child = make(free_port()).start()
        try:
            child.wait_healthy(deadline)
            return child
        except StackError:
            child.stop()
            if attempt == attempts - 1 or time.monotonic() > deadline:
                raise
        except BaseException:
            child.stop()
            raise
    raise AssertionError("unreachable")


def gunicorn_argv(app: str, fd: int, *, workers: int = 1, threads: int = 1, timeout: int = FUNCTION_TIMEOUT,
                  log_level: str = "info") -> list[str]:
    """How every function is served: gunicorn on an inherited socket, from the source checkout."""
    return [sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}", "--chdir", str(SOURCE_ROOT),
            "--workers", str(workers), "--worker-class", "gthread" if threads > 1 else "sync",
            "--threads", str(threads), "--timeout", str(timeout), "--graceful-timeout", "5",
            "--log-level", log_level,
            # gunicorn >= 25.1 opens one control socket per user (~/.gunicorn/gunicorn.ctl) by default:
            # several masters on one machine would take it from each other
            "--no-control-socket", app]


@dataclass(frozen=True)
class StackUrls:
    api: str
    render_tile: str
    assemble: str
    s3: str | None  # the S3 test server's endpoint, when the stack started one


class Stack:
    """The service as separate processes on loopback ports; a context manager.

    ``with Stack(render_workers=2, log_dir=tmp) as stack: requests.post(stack.urls.api + "/v1/renders", ...)``.
    ``settings`` is what the api process was given (open its store with ``store()``).
    Children inherit this process's environment (or ``base_env``), then the stack sets the ``FRACTALLY_*``
    variables it decides (store, S3 endpoint and fake credentials when it runs the S3
    server, invoker, function URLs) and finally applies ``env``. With ``log_dir`` each
    process logs to ``<log_dir>/<name>.log``; without, to this process's terminal (the
    S3 test server's per-request log is dropped then).
    """

    def __init__(self, *, port: int = 0, render_workers: int | None = None, assemble_workers: int = 1,
                 api_threads: int = 16, store_url: str | None = None, log_dir: Path | str | None = None,
                 env: Mapping[str, str] | None = None, base_env: Mapping[str, str] | None = None,
                 log_level: str = "info",
                 startup_timeout: float = 120.0, die_with_parent: bool = True) -> None:
        self.port = port
        self.render_workers = render_workers or os.cpu_count() or 1
        self.assemble_workers = assemble_workers
        self.api_threads = api_threads
        self.store_url = store_url
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.extra_env = dict(env or {})
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self.die_with_parent = die_with_parent
        self.children: list[Child] = []
        self._urls: StackUrls | None = None
        self.settings: Settings | None = None

    # -- starting --------------------------------------------------------------------------

    @property
    def urls(self) -> StackUrls:
        if self._urls is None:
            raise StackError("the stack is not started")
        return self._urls

    def _log(self, name: str) -> Path | None:
        return self.log_dir / f"{name}.log" if self.log_dir is not None else None

    def _base_env(self) -> dict[str, str]:
        return {**self.base_env, "PYTHONUNBUFFERED": "1"}

    def _start_s3(self, deadline: float) -> Child:
        def make(port: int) -> Child:
            url = f"http://{LOOPBACK}:{port}"
            argv = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]
            return Child("s3", argv, self._base_env(), url, health_path="/moto-api/config",
                         log_path=self._log("s3"), die_with_parent=self.die_with_parent,
                         quiet=True)  # one log line per object request would bury the functions' logs

        return start_with_free_port(make, deadline)

    def _store_env(self, s3: Child | None) -> dict[str, str]:
        if s3 is None:
            url = self.store_url or ""
            if "://" not in url:  # a folder: every process must see the same one
                url = Path(url).resolve().as_uri()
            return {PREFIX + "STORE_URL": url}
        env = {PREFIX + "STORE_URL": self.store_url or DEFAULT_BUCKET_URL, PREFIX + "S3_ENDPOINT": s3.url}
        env.update({PREFIX + k: v for k, v in TEST_S3_CREDENTIALS.items()})
        return env

    def start(self) -> "Stack":
        """Start every process and wait until all are healthy; on any failure stop what started."""
        if self.children:
            raise StackError("the stack is already started")
        deadline = time.monotonic() + self.startup_timeout
        sockets: dict[str, socket.socket] = {}
        try:
            for name in ("render_tile", "assemble", "api"):  # first: a taken --port fails at once
                sockets[name] = _listen(name, self.port if name == "api" else 0)
            s3 = None
            if self.store_url is None:
                s3 = self._start_s3(deadline)
                self.children.append(s3)
                store_env = self._store_env(s3)
                self._create_bucket(store_env)
            else:
                store_env = self._store_env(None)
            urls, api_env = self._start_functions(store_env, sockets)
            for child in self.children:
                child.wait_healthy(deadline)
            self._urls = StackUrls(urls["api"], urls["render_tile"], urls["assemble"], s3.url if s3 else None)
            self.settings = Settings.from_env({**self._base_env(), **api_env, **self.extra_env})
        except BaseException:
            self.stop()
            raise
        finally:
            for s in sockets.values():
                s.close()  # the children hold their own copies
        return self

    def _start_functions(self, store_env: dict[str, str], sockets: dict[str, socket.socket]
                         ) -> tuple[dict[str, str], dict[str, str]]:
        """Start render_tile, assemble and the api on their bound sockets (not waiting for health)."""
        urls = {name: f"http://{LOOPBACK}:{s.getsockname()[1]}" for name, s in sockets.items()}
        api_env = {**store_env, PREFIX + "INVOKER": "http",
                   PREFIX + "RENDER_TILE_URL": urls["render_tile"] + "/",
                   PREFIX + "ASSEMBLE_URL": urls["assemble"] + "/",
                   PREFIX + "HTTP_CONCURRENCY": str(2 * self.render_workers),
                   PREFIX + "PUBLIC_URL": urls["api"]}
        plan = {
            "render_tile": (store_env, "functions.render_tile.app:create_app()", self.render_workers, 1),
            "assemble": (store_env, "functions.assemble.app:create_app()", self.assemble_workers, 1),
            "api": (api_env, "functions.api.app:create_app()", 1, self.api_threads),
        }
        for name, (env, app, workers, threads) in plan.items():
            fd = sockets[name].fileno()
            argv = gunicorn_argv(app, fd, workers=workers, threads=threads, log_level=self.log_level)
            child = Child(name, argv, {**self._base_env(), **env, **self.extra_env}, urls[name],
                          log_path=self._log(name), pass_fds=(fd,), cwd=SOURCE_ROOT,
                          die_with_parent=self.die_with_parent)
            self.children.append(child.start())
        return urls, api_env

    def _create_bucket(self, store_env: Mapping[str, str]) -> None:
        Settings.from_env(store_env).open_store().create_bucket()

    # -- running ---------------------------------------------------------------------------

    def store(self) -> ObjectStore:
        """The store every process of the stack uses (for tests and tools to look into)."""
        if self.settings is None:
            raise StackError("the stack is not started")
        return self.settings.open_store()

    def dead(self) -> Child | None:
        """The first process that has exited, if any (a stack with a dead part is broken)."""
        return next((c for c in self.children if not c.alive()), None)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every process group (api first), wait, SIGKILL what is left at ``timeout``."""
        for child in reversed(self.children):
            child.stop_signal()
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            child.stop_wait(deadline)
        self.children = []
        self._urls = None

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def curl_example(api_url: str) -> str:
    return (f"curl -si -X POST {api_url}/v1/renders -H 'Content-Type: application/json' "
            "-d '{\"c\": [-0.8, 0.156], \"width\": 1024, \"height\": 768}'")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_stack(stack: Stack, out: IO[str] | None = None, poll: float = 0.5) -> int:
    """The CLI's loop: start, print where things are, run until SIGINT/SIGTERM or a child dies."""
    out = out or sys.stdout
    with _interrupt_on_sigterm():
        try:
            stack.start()
            urls = stack.urls
            store = stack.settings.store_url + (f" at {urls.s3}" if urls.s3 else "")
            print(f"fractally stack: api at {urls.api}\n"
                  f"  render_tile x{stack.render_workers} at {urls.render_tile}, assemble at {urls.assemble}\n"
                  f"  store {store}\n"
                  f"try:\n  {curl_example(urls.api)}\n"
                  f"then poll the Location it answers. Ctrl-C stops everything.", file=out, flush=True)
            while True:
                time.sleep(poll)
                dead = stack.dead()
                if dead is not None:
                    print(f"fractally stack: {dead.name} exited with code {dead.returncode}; stopping",
                          file=sys.stderr, flush=True)
                    return 1
        except KeyboardInterrupt:
            print("fractally stack: stopping", file=sys.stderr, flush=True)
            return 0
        except StackError as err:
            print(f"fractally stack: {err}", file=sys.stderr, flush=True)
            return 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
            try:
                stack.stop()
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)
