"""HTTP entry point of render_tile: ``POST /`` with a tile task (run by gunicorn, Knative, OpenFaaS)."""

from __future__ import annotations

from flask import Flask

from fractally.config import Settings
from fractally.web import function_app
from functions.render_tile.handler import handle


def create_app(settings: Settings | None = None) -> Flask:
    """``gunicorn 'functions.render_tile.app:create_app()'``: settings from FRACTALLY_* unless given."""
    return function_app(__name__, handle, settings)
