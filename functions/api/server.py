"""``fractally serve``: the embedded service (docs/api.md) in one gunicorn process.

One worker (so one in-process invoker and one view of which jobs are running) with many threads
(gthread): request handling is I/O and waits, rendering happens on the service's own thread pools,
so status polls are answered at once while every core renders (docs/architecture.md principle 6). The app is
built in the worker, after the fork, so no thread pool crosses a fork.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from fractally.config import Settings
from functions.serve import GunicornServer, bind

if TYPE_CHECKING:
    from flask import Flask

    from fractally.jobs.invoke import Invoker

DEFAULT_THREADS = 32
GRACEFUL_TIMEOUT = 10  # seconds an in-flight request may take to finish after SIGTERM


class EmbeddedServer(GunicornServer):
    """The api under gunicorn; with the in-process invoker it also loads the kernels in the background."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        super().__init__(self._create_app, options, prog="fractally serve")

    def _create_app(self) -> "Flask":
        from functions.api.app import create_app

        app = create_app(self.settings)
        if self.settings.invoker == "inprocess":
            invoker = app.extensions["fractally"].service.invoker
            threading.Thread(target=_warm_kernels, args=(invoker,), name="warm-kernels", daemon=True).start()
        return app

    def close_service(self) -> None:
        """Cancel queued tiles on the way out, so a stopped server does not finish every job first."""
        if self.app is not None:
            self.app.extensions["fractally"].service.close()


#: Longest the kernel loader waits for quiet moments in all. Then it stops and leaves what it has not
#: loaded to the first job that needs it: loading it in the middle of a job would stall that job's
#: requests (for 10-30 ms a kernel, measured in docs/benchmarks.md, "Responsiveness").
LOADER_PATIENCE = 5.0
#: How long the service must have been without a job before the loader takes its next step: a
#: client's next job often follows the last one at once, and a step once begun is not interrupted.
LOADER_QUIET = 0.2


def _warm_kernels(invoker: Invoker | None = None) -> None:
    """Load the numba kernels (render and colour) now, at the invoker's helper priority (nice 10), not in
    the middle of the first job.

    Loading them from numba's cache holds the GIL for about half a second in all (the colouring loop's
    module alone about 0.2 s); done by the first job's first tile and first band, that stalled every
    request of the moment, status polls included. Here it overlaps the server's start instead, while
    requests are still rare, and steps aside for jobs: before each kernel it waits until ``invoker`` has
    run no job for ``LOADER_QUIET`` seconds (for at most ``LOADER_PATIENCE`` in all, then it stops), so a
    job submitted during the loading does not share the cores and the GIL with it (a kernel that job
    needs, it loads itself, as it would anyway).
    """
    from fractally.jobs.invoke import InProcessInvoker, raise_thread_nice
    from fractally.picture.warmup import freeze_loaded_objects, warm

    raise_thread_nice(InProcessInvoker.HELPER_NICE)
    give_up = time.monotonic() + LOADER_PATIENCE

    def go_on() -> bool:
        # What is loaded by now, by this thread or by a job, out of the full collections' sight at once
        # (each walked numba's objects for 40-65 ms holding the GIL); then wait for a quiet moment.
        freeze_loaded_objects()
        return invoker is None or invoker.wait_until_idle(max(0.0, give_up - time.monotonic()), quiet=LOADER_QUIET)

    try:
        logging.getLogger("fractally.serve").debug("kernels loaded: %s", warm(go_on))
        freeze_loaded_objects()
    except Exception:  # a broken kernel shows on the first render, with its own error; not here
        logging.getLogger("fractally.serve").warning("could not load the kernels ahead of the first job",
                                                     exc_info=True)


def _banner(settings: Settings, host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    url = f"http://{bind(shown, port)}/"
    return (
        f"Fractal.ly is serving at {url}  (store: {settings.store_url}, invoker: {settings.invoker})\n"
        "Try:\n"
        f"  curl -s -X POST localhost:{port}/v1/renders -H 'content-type: application/json' "
        "-d '{\"c\":[-0.8,0.156]}'\n"
        f"  open {url} for the explorer, {url}openapi.json for the API; Ctrl-C stops the server.\n"
    )


def serve(host: str = "127.0.0.1", port: int = 8080, threads: int = DEFAULT_THREADS,
          settings: Settings | None = None) -> int:
    """Run until SIGINT or SIGTERM; gunicorn's arbiter shuts the worker down and exits 0."""
    settings = settings or Settings.from_env()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    server: EmbeddedServer

    def when_ready(arbiter: Any) -> None:
        bound = arbiter.LISTENERS[0].sock.getsockname()[1] if arbiter.LISTENERS else port
        print(_banner(settings, host, bound), end="", flush=True)

    options = {
        "bind": [bind(host, port)],
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "control_socket_disable": True,  # gunicorn ≥ 25 would share one socket in $HOME between servers
        "proc_name": "fractally",
        "errorlog": "-",
        "loglevel": "info",
        "when_ready": when_ready,
        "worker_exit": lambda arbiter, worker: server.close_service(),
    }
    server = EmbeddedServer(settings, options)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(serve())
