"""Every error the core raises on purpose, each with the HTTP status it maps to.

One table (this module) decides status codes; the web layer only turns a
``FractallyError`` into docs/api.md's error shape. Messages are written for the
person who sent the request: they name the field and say what is allowed.
"""

from __future__ import annotations


class FractallyError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` a stable machine-readable word."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class SpecError(FractallyError):
    """A render spec field is missing, of the wrong type, or out of range."""

    status = 422
    code = "invalid_spec"


class BadRequest(FractallyError):
    """The request itself is malformed (not JSON, wrong content type, ...)."""

    status = 400
    code = "bad_request"


class Unauthorized(FractallyError):
    status = 401
    code = "unauthorized"


class NotFound(FractallyError):
    status = 404
    code = "not_found"


class PayloadTooLarge(FractallyError):
    status = 413
    code = "payload_too_large"


class KeyNotFound(FractallyError):
    """An object the caller asked the store for is not there."""

    status = 404
    code = "not_found"


class InvalidKey(FractallyError):
    """An object key that could escape the store root or is otherwise unsafe."""

    status = 400
    code = "invalid_key"


class StoreUnavailable(FractallyError):
    """The object store could not be reached; the work can be retried."""

    status = 503
    code = "store_unavailable"
