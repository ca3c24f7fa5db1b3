"""HTTP entry point of assemble: ``POST /`` with ``{"job": id}`` (run by gunicorn, Knative, OpenFaaS)."""

from __future__ import annotations

from flask import Flask

from fractally.config import Settings
from fractally.web import function_app
from functions.assemble.handler import handle


def create_app(settings: Settings | None = None) -> Flask:
    """``gunicorn 'functions.assemble.app:create_app()'``: settings from FRACTALLY_* unless given."""
    return function_app(__name__, handle, settings)
