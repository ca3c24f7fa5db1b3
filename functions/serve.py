"""How a function's image serves it: ``fractally function NAME``, the command of every image.

gunicorn, configured in code (no config file, no command line of its own), one worker process with
threads (gthread): one store client and one view of the jobs per pod, requests are I/O or wait on
numba, which releases the GIL. What differs between the functions is one row of ``FUNCTIONS``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from gunicorn.app.base import BaseApplication

if TYPE_CHECKING:
    from flask import Flask


class GunicornServer(BaseApplication):
    """gunicorn running the app ``load_app`` builds, in its worker (after the fork: no thread pool crosses it)."""

    def __init__(self, load_app: Callable[[], "Flask"], options: dict[str, Any], prog: str) -> None:
        self.load_app = load_app
        self.options = options
        self.app: Flask | None = None
        super().__init__(prog=prog)

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> "Flask":
        self.app = self.load_app()
        return self.app


@dataclass(frozen=True)
class Function:
    """One function's server: its app factory and how long a request may take to finish on SIGTERM."""

    factory: str  # "module:callable", called with no arguments (settings from the environment)
    threads: int
    graceful_timeout: int


#: render-tile: one tile at a time (containerConcurrency 1), a second thread so probes answer while it
#: renders. assemble: likewise one job at a time; its graceful timeout lets a running assembly finish
#: when the pod is scaled down. The api's own server (``functions.api.server``) has 32 threads.
FUNCTIONS = {
    "render-tile": Function("functions.render_tile.app:create_app", threads=2, graceful_timeout=30),
    "assemble": Function("functions.assemble.app:create_app", threads=2, graceful_timeout=60),
}


def bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(name: str, host: str, port: int) -> int:
    """Serve function ``name`` on ``host:port`` until SIGTERM (gunicorn's arbiter exits 0)."""
    if name == "api":
        from functions.api.server import serve

        return serve(host, port)
    function = FUNCTIONS[name]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s")

    def load_app() -> "Flask":
        import importlib

        module, _, factory = function.factory.partition(":")
        return getattr(importlib.import_module(module), factory)()

    options = {
        "bind": [bind(host, port)],
        "workers": 1,
        "worker_class": "gthread",
        "threads": function.threads,
        # gthread: the arbiter hears from the worker's main loop, not from requests, so a long
        # assembly is not killed by this; it is how long a hung worker lives.
        "timeout": 120,
        "graceful_timeout": function.graceful_timeout,
        "control_socket_disable": True,  # gunicorn >= 25 would share one socket in $HOME between servers
        "proc_name": f"fractally-{name}",
        "errorlog": "-",
        "loglevel": "info",
    }
    GunicornServer(load_app, options, prog=f"fractally function {name}").run()
    return 0
