"""The api function's entry point: a Flask application factory, and nothing at import time.

    gunicorn 'functions.api.app:create_app()'     # from the repository root
    fractally serve                               # the same app in one gunicorn process

Tests build as many apps as they like, each over its own store (or their own ``Service``).
"""

from __future__ import annotations

from flask import Flask

from fractally.config import Settings
from fractally.malloc import keep_freed_memory
from fractally.service import Service
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
    app.json.sort_keys = False  # keep API.md's field order: id, status, progress, ...
    errors.register(app)
    routes.register(app, settings, service)
    tiles.register(app)
    return app
