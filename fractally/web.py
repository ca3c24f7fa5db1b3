"""The small web layer every function shares: JSON bodies in, docs/api.md's error shape out.

The core (``fractally/``) stays free of Flask except for this module, which only
the function apps import (Flask is the ``web`` extra). The status of each error
is decided once, in ``fractally.errors``; here a raised exception becomes
``{"error": {"code", "message", "field"}}`` and nothing else builds error
responses by hand. An unexpected exception is logged with its trace and answered
500 with a fixed message: its text could leak paths or internals.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from flask import Flask, Request, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from fractally.config import Settings
from fractally.errors import BadRequest, FractallyError, PayloadTooLarge, StoreUnavailable
from fractally.malloc import keep_freed_memory
from fractally.store import ObjectStore

log = logging.getLogger("fractally.web")

#: The largest JSON body a function reads (a tile task or a spec is well under 4 KiB).
MAX_JSON_BYTES = 64 * 1024

#: Stable machine-readable codes for Werkzeug's own errors (others: ``http_<status>``).
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 406: "not_acceptable", 408: "request_timeout",
              411: "length_required", 413: "payload_too_large", 414: "uri_too_long",
              415: "unsupported_media_type", 429: "too_many_requests", 431: "request_headers_too_large"}

#: Headers of a Werkzeug error worth keeping on the JSON answer (``Allow`` on a 405, ...).
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    """docs/api.md's error shape; never cached (the next try may succeed)."""
    response = jsonify({"error": {"code": code, "message": message, "field": field}})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def _describe(err: HTTPException) -> str:
    """Werkzeug's fixed texts (nothing from the request), said plainly."""
    if err.code == 404:
        rules = {rule.rule for rule in current_app.url_map.iter_rules()}
        return "no such endpoint" + ("; the API is described at /openapi.json" if "/openapi.json" in rules else "")
    if err.code == 405:
        shown = ", ".join(m for m in (getattr(err, "valid_methods", None) or []) if m not in ("HEAD", "OPTIONS"))
        return f"method {request.method} is not allowed here" + (f"; use {shown}" if shown else "")
    if err.code == 413:
        limit = request.max_content_length
        return f"the request body is too large; at most {limit} bytes are accepted" if limit else \
            "the request body is too large"
    return err.description or err.name


def handle_error(err: Exception) -> Response | HTTPException:
    """Any exception a view raises, as docs/api.md's error shape (the one mapping for every app).

    ``FractallyError`` keeps its status and code (fractally/errors.py is the table; 503 adds
    ``Retry-After`` so callers retry); Werkzeug's errors get the same shape; anything else
    is a bug: logged with its trace, answered 500 with a fixed text.
    """
    if isinstance(err, FractallyError):
        response = error_response(err.status, err.code, err.message, err.field)
        if err.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="fractally"'
        if err.status == 503:
            response.headers["Retry-After"] = "1"
        return response
    if isinstance(err, HTTPException):
        if err.code is None or err.code < 400:  # routing redirects (a missing trailing slash)
            return err
        response = error_response(err.code, HTTP_CODES.get(err.code, f"http_{err.code}"), _describe(err))
        for name, value in err.get_headers():
            if name in _KEPT_HEADERS:
                response.headers[name] = value
        return response
    log.error("unexpected error on %s %s", request.method, request.path, exc_info=err)
    return error_response(500, "internal_error", "an internal error occurred; it has been logged")


def register_error_handlers(app: Flask) -> None:
    """The one registration: ``Exception`` covers FractallyError, HTTPException and bugs."""
    app.register_error_handler(Exception, handle_error)


_MAX_INT_DIGITS = 18  # longer JSON integers are read as floats, so range checks answer, not int()


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise BadRequest(f"the field {key[:64]!r} appears twice in the JSON object; give it once", key[:64])
        seen[key] = value
    return seen


def _parse_int(text: str) -> int | float:
    return int(text) if len(text) <= _MAX_INT_DIGITS else float(text)


def json_body(req: Request | None = None, max_bytes: int = MAX_JSON_BYTES, require_json_type: bool = False) -> Any:
    """The request's body parsed strictly as JSON: UTF-8, no duplicate keys, bounded size.

    The size is checked before reading (``PayloadTooLarge``), also for chunked bodies.
    ``require_json_type`` insists on ``Content-Type: application/json`` (the public api does;
    the functions take whatever their invoker sends).
    """
    req = request if req is None else req
    if require_json_type and not req.is_json:
        raise BadRequest("send the body as a JSON object with the header Content-Type: application/json")
    if req.content_length is not None and req.content_length > max_bytes:
        raise PayloadTooLarge(f"the body is {req.content_length} bytes; at most {max_bytes} are accepted")
    try:
        data = req.stream.read(max_bytes + 1)
        # A chunked body has no Content-Length: werkzeug stops at MAX_CONTENT_LENGTH without a word, and
        # only the next read says whether more was sent (it raises 413, or returns the extra byte).
        if req.content_length is None and len(data) >= max_bytes:
            data += req.stream.read(1)
    except HTTPException:
        raise
    except Exception:  # the server's own parser gave up on the body (broken chunked encoding, a cut connection)
        raise BadRequest("the request body could not be read: it was cut short or its chunked encoding is broken") \
            from None
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the body is over {max_bytes} bytes; at most {max_bytes} are accepted")
    if not data.strip():
        raise BadRequest("the request body is empty; send a JSON object, e.g. {\"c\": [-0.8, 0.156]}")
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_reject_duplicate_keys, parse_int=_parse_int)
    except UnicodeDecodeError:
        raise BadRequest("the request body is not valid UTF-8") from None
    except json.JSONDecodeError as err:
        raise BadRequest(f"the request body is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") \
            from None
    except RecursionError:
        raise BadRequest("the JSON document is nested too deeply") from None
    except ValueError:  # an integer beyond Python's digit limit
        raise BadRequest("a number in the request body has too many digits") from None


#: Liveness paths: ours, and the one OpenFaaS Community Edition probes (it ignores the annotations that
#: name another path, and uses this one for its readiness probe too, hence no store call here).
LIVENESS_PATHS = ("/healthz", "/_/health")
#: Readiness paths: ours, and the one OpenFaaS Pro's readiness annotation can name.
READINESS_PATHS = ("/readyz", "/_/ready")
#: The fixed key whose existence check tells that the object store answers (it need not exist).
READY_PROBE_KEY = "health/ready-probe"


def store_answers(store: ObjectStore) -> bool:
    """One cheap existence check of a fixed key: False (and a log line) when the store cannot be reached."""
    try:
        store.exists(READY_PROBE_KEY)
    except Exception as err:  # any failure means "not ready"; the details go to the log only
        log.warning("readiness probe failed: %s", type(err).__name__, exc_info=err)
        return False
    return True


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def add_healthz(app: Flask, store: ObjectStore) -> None:
    """Liveness at ``/healthz`` and ``/_/health``: the process answers (no store call, so a slow store
    restarts no pods). Readiness at ``/readyz`` and ``/_/ready``: the object store answers, else 503."""
    def alive() -> Response:
        return _no_store(jsonify({"status": "ok"}))

    def ready() -> Response:
        if not store_answers(store):
            raise StoreUnavailable("the object store cannot be reached")
        return _no_store(jsonify({"status": "ready"}))

    for path in LIVENESS_PATHS:
        app.add_url_rule(path, "healthz" if path == "/healthz" else "openfaas_health", alive, methods=["GET"])
    for path in READINESS_PATHS:
        app.add_url_rule(path, "readyz" if path == "/readyz" else "openfaas_ready", ready, methods=["GET"])


def function_app(import_name: str, handle: Callable[[Any, ObjectStore], dict],
                 settings: Settings | None = None) -> Flask:
    """A function's Flask app (the OpenFaaS/Knative shape): ``POST /`` runs ``handle(body, store)``.

    Settings are read once (from the environment unless given) and the store is built
    once per process, here; ``handle`` is the function's plain ``handler.handle``.
    """

    keep_freed_memory()
    settings = Settings.from_env() if settings is None else settings
    store = settings.open_store()
    # The S3 client is built while the first request loads the kernels (bench/images.py).
    threading.Thread(target=store.prepare, name="store-prepare", daemon=True).start()
    app = Flask(import_name)
    app.config["MAX_CONTENT_LENGTH"] = MAX_JSON_BYTES
    app.extensions["fractally.store"] = store
    register_error_handlers(app)
    add_healthz(app, store)

    @app.post("/")
    def invoke() -> Response:
        return jsonify(handle(json_body(), store))

    return app
