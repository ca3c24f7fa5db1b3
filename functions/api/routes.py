"""The public REST API of docs/api.md: each route turns HTTP into one ``Service`` call and back.

No rendering, job or store logic lives here (that is ``fractally``'s); this module only reads
requests strictly (the body is JSON, ids are ids, each query key once), picks status codes and
headers, and raises. Every error becomes JSON in ``functions.api.errors``.
"""

from __future__ import annotations

import hmac
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from html import escape
from urllib.parse import urlsplit
from urllib.request import url2pathname

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, request, send_file
from werkzeug.exceptions import RequestURITooLarge

from fractally import jobs
from fractally.picture.compose import CONTENT_TYPES
from fractally.config import Settings
from fractally.errors import SpecError, StoreUnavailable, Unauthorized
from fractally.jobs.service import Service
from fractally.picture.spec import parse_spec, spec_from_query
from fractally.web import json_body, store_answers
from functions.api import openapi
from functions.api.errors import NotReady, ServerBusy

log = logging.getLogger("fractally.api")

bp = Blueprint("api", __name__)

#: Largest accepted query string of a synchronous render (every field at its 256-character cap fits).
MAX_QUERY_BYTES = 4096
#: A result never changes once written (the id is the spec's hash): clients may cache it for good.
RESULT_MAX_AGE = 365 * 24 * 3600
SYNC_MAX_AGE = 24 * 3600


@dataclass
class ApiState:
    """What the routes need, kept in ``app.extensions["fractally"]`` (one per app, no globals)."""

    settings: Settings
    service: Service
    sync_slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(4))


def state() -> ApiState:
    """This app's settings and service (the routes hold no module-level state)."""
    return current_app.extensions["fractally"]


# --- helpers ----------------------------------------------------------------------------------

def _absolute(path: str) -> str:
    """An absolute URL of this api: ``public_url`` when set (behind a gateway), else the request's host."""
    base = state().settings.public_url or request.host_url
    return base.rstrip("/") + path


def _base_path() -> str:
    """The path this api is served under, '' at the root: the path of ``public_url`` (a gateway's
    ``/function/api``). The request cannot tell: the OpenFaaS gateway strips the prefix and sends no
    X-Forwarded-Prefix, and trusting that header from any client would let it steer our links."""
    return urlsplit(state().settings.public_url or "").path.rstrip("/")


def _links(job_id: str) -> dict[str, str]:
    base = _base_path()
    return {"self": f"{base}/v1/renders/{job_id}", "result": f"{base}/v1/renders/{job_id}/result"}


def _result_url(job: jobs.Job) -> str:
    """The store's own URL when a client can fetch it (S3: presigned), else this api's result route."""
    url = state().service.result_url(job)
    if url.startswith(("http://", "https://")):
        return url
    return _absolute(f"/v1/renders/{job.id}/result")


def _status_body(status: jobs.Status) -> dict[str, Any]:
    body = status.to_dict()
    if status.status == "done":
        body["result"] = {"url": _result_url(status.job), "format": status.job.spec.format}
    body["links"] = _links(status.job.id)
    return body


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _check_auth() -> None:
    """Write endpoints need ``Authorization: Bearer <token>`` when the service has a token."""
    token = state().settings.auth_token
    if not token:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = token.encode("utf-8")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected):
        raise Unauthorized("this endpoint needs the header Authorization: Bearer <token> with the service's token")


# --- jobs -------------------------------------------------------------------------------------

@bp.post("/v1/renders")
def submit_render() -> Response:
    """Queue a render (or find the identical one): always 202, the body says how far it is."""
    _check_auth()
    spec = parse_spec(json_body(require_json_type=True))
    status, _created = state().service.submit(spec)
    response = _no_store(jsonify(_status_body(status)))
    response.status_code = 202
    response.headers["Location"] = _absolute(f"/v1/renders/{status.job.id}")
    return response


@bp.get("/v1/renders/<job_id>")
def render_status(job_id: str) -> Response:
    """Read off the store on every call (never cached: it changes until the job is done)."""
    status = state().service.status(jobs.check_job_id(job_id))
    return _no_store(jsonify(_status_body(status)))


@bp.get("/v1/renders/<job_id>/result")
def render_result(job_id: str) -> Response:
    """The result: a redirect to the object store when it can serve it, else streamed from the folder."""
    service = state().service
    status = service.status(jobs.check_job_id(job_id))
    if status.status != "done":
        detail = f" ({status.error.get('message')})" if status.status == "failed" and status.error else ""
        raise NotReady(f"render {job_id} has no result yet: its status is {status.status}{detail}", "id")
    job = status.job
    url = service.result_url(job)
    if url.startswith(("http://", "https://")):
        return _no_store(redirect(url, 302))
    name = f"{job.id}.{job.spec.format}"
    mimetype = CONTENT_TYPES[job.spec.format]
    if url.startswith("file:"):
        response = send_file(Path(url2pathname(urlsplit(url).path)), mimetype=mimetype, download_name=name,
                             conditional=True, max_age=RESULT_MAX_AGE)
    else:  # a store with neither kind of URL: read it whole
        response = Response(service.result_bytes(job), mimetype=mimetype)
        response.headers.set("Content-Disposition", "inline", filename=name)
        response.cache_control.public = True
        response.cache_control.max_age = RESULT_MAX_AGE
    response.cache_control.immutable = True
    return response


# --- synchronous renders ----------------------------------------------------------------------

@bp.get("/v1/render.png", defaults={"fmt": "png"})
@bp.get("/v1/render.msgpack", defaults={"fmt": "msgpack"})
def render_now(fmt: str) -> Response:
    """A small image rendered while the client waits, from query parameters."""
    if len(request.query_string) > MAX_QUERY_BYTES:
        raise RequestURITooLarge(f"the query string is over {MAX_QUERY_BYTES} bytes")
    for key, values in request.args.lists():
        if len(values) > 1:
            raise SpecError(f"{key[:64]} is given {len(values)} times; give each parameter once", key[:64])
    data = spec_from_query(request.args)
    if data.setdefault("format", fmt) != fmt:
        raise SpecError(f"format={str(data['format'])[:40]} contradicts the path /v1/render.{fmt}", "format")
    spec = parse_spec(data, sync=True)
    slots = state().sync_slots
    if not slots.acquire(blocking=False):  # keep request threads free for status polls
        raise ServerBusy("the server is busy with other synchronous renders; retry in a moment")
    try:
        body, content_type = state().service.render_sync(spec)
    finally:
        slots.release()
    response = Response(body, mimetype=content_type)
    response.headers.set("Content-Disposition", "inline", filename=f"render.{fmt}")
    response.cache_control.public = True
    response.cache_control.max_age = SYNC_MAX_AGE
    return response


# --- operations -------------------------------------------------------------------------------

@bp.get("/healthz")
@bp.get("/_/health")  # the path OpenFaaS Community Edition probes, whatever the annotations say
def healthz() -> Response:
    """Liveness: the process answers. Touches nothing else, so it stays cheap under load."""
    return _no_store(jsonify({"status": "ok"}))


@bp.get("/readyz")
@bp.get("/_/ready")  # the readiness path OpenFaaS Pro's annotation names in stack.yml
def readyz() -> Response:
    """Readiness: the object store answers (a cheap existence check of a fixed key)."""
    if not store_answers(state().service.store):
        raise StoreUnavailable("the object store cannot be reached")
    return _no_store(jsonify({"status": "ready"}))


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """Built from the core's constants on each call, so it always states the limits enforced."""
    return jsonify(openapi.document(state().settings.public_url, current_app.config["MAX_CONTENT_LENGTH"],
                                    MAX_QUERY_BYTES))


def _page(name: str) -> Response:
    """A static page. Its URLs are all relative; under a path prefix (``public_url``'s) it also gets a
    ``<base>`` naming that prefix, so they resolve there even when the page was opened without the
    trailing slash (``/function/api`` instead of ``/function/api/``: the api sees ``/`` for both)."""
    base = _base_path()
    if not base:
        return current_app.send_static_file(name)
    html = (Path(current_app.static_folder) / name).read_text(encoding="utf-8")
    html = html.replace("<head>", f'<head>\n  <base href="{escape(base)}/">', 1)
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/")
def index() -> Response:
    """The web explorer (Mandelbrot → Julia over XYZ tiles): a static page that uses the API like any client."""
    return _page("explorer.html")


@bp.get("/render")
def render_form() -> Response:
    """The render form (spec fields, live preview, a job's progress): the page that was at ``/``."""
    return _page("index.html")


_CSP = ("default-src 'self'; img-src 'self' data: blob: http: https:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


@bp.after_app_request
def security_headers(response: Response) -> Response:
    """No MIME sniffing anywhere; the page may load only its own scripts and styles."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def register(app: Flask, settings: Settings, service: Service, sync_slots: int = 4) -> None:
    """Attach the routes and their state to ``app``."""
    app.extensions["fractally"] = ApiState(settings, service, threading.BoundedSemaphore(max(1, sync_slots)))
    app.register_blueprint(bp)
