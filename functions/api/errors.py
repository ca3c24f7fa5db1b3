"""The api's errors: every one in docs/api.md's JSON shape, ``{"error": {"code", "message", "field"}}``.

The mapping itself is shared by every function app and lives once, in ``fractally.web``: the
core's ``FractallyError`` keeps its own status and code (fractally/errors.py is the table),
werkzeug's ``HTTPException`` (unknown route, wrong method, body too large) gets the same shape,
and anything else is a bug, logged and answered with a generic 500 that carries no exception
text. This module registers that one handler and adds the two errors only the api raises.
"""

from __future__ import annotations

from flask import Flask

from fractally.errors import FractallyError, NotFound
from fractally.web import register_error_handlers


class NotReady(NotFound):
    """The job exists but has no result yet (or failed): ``GET /v1/renders/{id}/result`` says so."""

    code = "not_ready"


class ServerBusy(FractallyError):
    """Every synchronous-render slot is taken: not the client's fault, and worth retrying soon."""

    status = 503
    code = "busy"


def register(app: Flask) -> None:
    """The one registration: ``Exception`` covers FractallyError, HTTPException and bugs."""
    register_error_handlers(app)
