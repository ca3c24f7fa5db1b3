"""The api function's entry point: a Flask application factory, and nothing at import time.

    gunicorn 'functions.api.app:create_app()'     # from the repository root
    fractally serve                               # the same app in one gunicorn process

Tests build as many apps as they like, each over its own store (or their own ``Service``).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from flask import Flask

from fractally.config import Settings
from fractally.malloc import keep_freed_memory
from fractally.jobs.service import Service
from functions.api import errors, routes, tiles

#: Largest request body accepted (a render spec is well under 1 KiB); more is a 413.
MAX_BODY_BYTES = 64 * 1024


def create_app(settings: Settings | None = None, service: Service | None = None) -> Flask:
    """Build the api over ``service`` (default: one made from ``settings``, default: the environment).

    ``settings`` decides the api's own behaviour (auth token, public URL); when only a service is
    given, its settings are used.
    """
    keep_freed_memory()  # the embedded service renders tiles in this process
    if settings is None:
        settings = service.settings if service is not None else Settings.from_env()
    if service is None:
        service = Service.from_settings(settings)
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # keep docs/api.md's field order: id, status, progress, ...
    errors.register(app)
    routes.register(app, settings, service)
    tiles.register(app)
    _close_on_sigterm(service)
    return app


def _close_on_sigterm(service: Service) -> None:
    """Under a gunicorn worker, close ``service`` as soon as the worker is told to stop (SIGTERM: a
    scale-down, a new revision, ``docker stop``), whatever started gunicorn: ``fractally serve`` and
    ``fractally function api`` also close it from ``worker_exit``, but a bare
    ``gunicorn 'functions.api.app:create_app()'`` has no such hook. Closing releases the dispatch leases
    of the jobs this api still runs, so another replica carries them on at its next status poll instead
    of after FRACTALLY_LEASE_TIMEOUT, and cancels their queued calls.

    gunicorn installs its worker's signal handlers before it loads the app, so the handler found here is
    its worker's; it still runs first (stop accepting, let requests in flight finish). Elsewhere (tests,
    a thread other than the main one) nothing is changed.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    worker = getattr(previous, "__self__", None)
    if not type(worker).__module__.startswith("gunicorn.workers"):
        return
    closing = threading.Event()

    def on_sigterm(signum: int, frame: Any) -> None:
        previous(signum, frame)
        if closing.is_set():  # a second SIGTERM while closing: nothing more to do
            return
        closing.set()
        try:
            service.close()
        except Exception:  # the worker stops anyway; the leases then expire
            logging.getLogger("fractally.api").warning("could not close the service on SIGTERM", exc_info=True)

    signal.signal(signal.SIGTERM, on_sigterm)
