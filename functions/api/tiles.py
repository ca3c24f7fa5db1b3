"""``GET /v1/tiles/{fractal}/{z}/{x}/{y}.png``: the explorer's XYZ tiles (the scheme is ``fractally.jobs.xyz``'s).

A tile's URL names its picture completely, so its PNG never changes: it is served ``immutable``
with the spec's content hash as ``ETag``, and a matching ``If-None-Match`` is answered ``304``
before the store or the kernel is touched. The PNG is kept in the object store
(``xyz/<content hash>.png``), so a second request, on any replica, is one read. A new tile is
rendered on the service's sync pool (the request thread only waits, docs/architecture.md principle 6);
identical requests in flight share one render, and at most ``MAX_PENDING`` renders wait at once
(beyond that: 503 ``busy`` with ``Retry-After``, rather than an unbounded queue).
"""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import RequestURITooLarge

from fractally.jobs import xyz
from fractally.errors import SpecError
from fractally.jobs.service import Service
from fractally.picture.spec import RenderSpec
from functions.api.errors import ServerBusy

bp = Blueprint("tiles", __name__)

#: A tile's query is c, colormap and max_iter: a few dozen bytes.
MAX_QUERY_BYTES = 1024
#: Tile renders queued or running at once, per process.
MAX_PENDING = 64
#: The content behind a tile URL never changes: browsers and CDNs may keep it for a year.
TILE_MAX_AGE = 365 * 24 * 3600
_EXTENSION = "fractally.tiles"


@dataclass
class TileState:
    """Renders in flight, keyed by PNG key, so identical requests wait on one render."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    inflight: dict[str, Future] = field(default_factory=dict)
    #: Requests that found their tile's render in flight and waited for it instead of starting one
    #: (an observable for tests and debugging: how often coalescing happened in this process).
    joined: int = 0
    slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(MAX_PENDING))


def _service() -> Service:
    return current_app.extensions["fractally"].service  # routes.register put it there


def _immutable(response: Response, etag: str) -> Response:
    response.set_etag(etag)
    response.cache_control.public = True
    response.cache_control.max_age = TILE_MAX_AGE
    response.cache_control.immutable = True
    return response


def _render(spec: RenderSpec) -> bytes:
    """Render on the sync pool (or join the identical render already running) and wait for it."""
    tiles: TileState = current_app.extensions[_EXTENSION]
    service = _service()
    key = xyz.png_key(spec)
    with tiles.lock:
        future = tiles.inflight.get(key)
        created = future is None
        tiles.joined += not created
        if created:
            if not tiles.slots.acquire(blocking=False):
                raise ServerBusy("the server is busy rendering other tiles; retry in a moment")
            try:
                future = service.sync_pool.submit(xyz.render_png, spec, service.store)
            except RuntimeError:  # the pool is shut down: the server is stopping
                tiles.slots.release()
                raise ServerBusy("the server is shutting down; retry in a moment") from None
            tiles.inflight[key] = future
    if created:  # outside the lock: the callback takes it, and runs at once if the render is done
        future.add_done_callback(lambda _f: _finished(tiles, key))
    try:
        return future.result()
    except CancelledError:  # the service closed its pool under us: the server is stopping
        raise ServerBusy("the server is shutting down; retry in a moment") from None


def _finished(tiles: TileState, key: str) -> None:
    with tiles.lock:
        tiles.inflight.pop(key, None)
    tiles.slots.release()


@bp.get("/v1/tiles/<fractal>/<z>/<x>/<y>.png")
def tile_png(fractal: str, z: str, x: str, y: str) -> Response:
    """One 256×256 tile: 304 if the client has it, else from the store, else rendered now."""
    if len(request.query_string) > MAX_QUERY_BYTES:
        raise RequestURITooLarge(f"the query string is over {MAX_QUERY_BYTES} bytes")
    for name, values in request.args.lists():
        if len(values) > 1:
            raise SpecError(f"{name[:64]} is given {len(values)} times; give each parameter once", name[:64])
    spec = xyz.spec_from_request(fractal, z, x, y, request.args)
    etag = spec.content_hash()
    if request.if_none_match.contains_weak(etag):
        return _immutable(Response(status=304, mimetype="image/png"), etag)
    png = xyz.cached_png(spec, _service().store)
    if png is None:
        png = _render(spec)
    return _immutable(Response(png, mimetype="image/png"), etag)


def register(app: Flask) -> None:
    """Attach the tile route (after ``routes.register``, whose service it uses)."""
    app.extensions[_EXTENSION] = TileState()
    app.register_blueprint(bp)
