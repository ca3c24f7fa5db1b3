"""Hostile and broken requests on every endpoint, over real HTTP, byte for byte.

Every request is written by hand on a raw socket (``Connection: close``), so nothing between the
table and the server tidies it up: ``requests``/urllib3 would collapse ``../``, refuse a NUL or
re-encode unicode. Targets are real processes: the api as ``fractally serve`` (embedded, local
folder), and the render_tile and assemble functions as gunicorn processes of a ``Stack`` (their
own folder store) — on a cluster those are reachable too.

Each case records the status that comes back and who answers it:

* ``JSON``: our code, with docs/api.md's shape ``{"error": {"code", "message", "field"}}``;
* ``GUNICORN``: gunicorn refuses malformed HTTP before any application code runs (bad request line,
  header limits, NUL or raw UTF-8 in the target, ...) with its own small HTML page; recorded
  honestly, and still a 4xx with nothing internal in it;
* ``CLOSED``: not HTTP at all (a TLS handshake): the server closes the connection without an answer.

And after every case the stores' listings (temp folders included) are what they were before.
``tests/web/test_api.py`` has the Flask-test-client table of spec errors; this one is about the wire.
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from fractally.picture.spec import parse_spec
from fractally.ops.stack import Stack
from fractally.store import LocalStore
from tests.support.api import REPO_ROOT, running_server, store_snapshot
from tests.support.e2e import STARTUP_TIMEOUT, hermetic_env

pytestmark = pytest.mark.slow

JSON, GUNICORN, CLOSED = "json", "gunicorn", "closed"
LEAKS = ("Traceback", "/work/", "site-packages", '.py"', str(REPO_ROOT))
ID = "0" * 32  # well formed, never created


@dataclass(frozen=True)
class Case:
    id: str
    server: str  # "api" | "render_tile" | "assemble"
    route: str  # the Flask rule it aims at ("" for requests that never reach routing)
    raw: bytes  # the whole request as sent
    status: int | None  # None for CLOSED
    answer: str = JSON
    field: str | None = ""  # "" = do not check error.field


def http(method: str, target: str, body: bytes | str = b"", *, content_type: str | None = "application/json",
         headers: tuple[str, ...] = (), length: bool = True) -> bytes:
    """One HTTP/1.1 request, exactly as given (the target is not normalized or encoded)."""
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if content_type is not None and data:
        lines.append(f"Content-Type: {content_type}")
    if length and data:
        lines.append(f"Content-Length: {len(data)}")
    lines += headers
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + data


def chunked(method: str, target: str, chunks: list[bytes], *, tail: bytes = b"0\r\n\r\n") -> bytes:
    head = http(method, target, content_type=None, headers=("Content-Type: application/json",
                                                             "Transfer-Encoding: chunked"))
    return head + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + tail


def post(body: bytes | str, content_type: str | None = "application/json", target: str = "/v1/renders") -> bytes:
    return http("POST", target, body, content_type=content_type)


def get(target: str) -> bytes:
    return http("GET", target)


def spec(**fields: object) -> str:
    return json.dumps({"c": [-0.8, 0.156], **fields})


def task(**changes: object) -> str:
    """A render_tile task; valid (job id = the spec's hash) unless ``changes`` break it."""
    good = {"c": [-0.8, 0.156], "width": 32, "height": 32, "tile_size": 16, "max_iter": 50}
    body = {"job": parse_spec(good).content_hash(), "spec": parse_spec(good).normalized(), "tile": 0}
    body.update(changes)
    return json.dumps(body)


C = '"c": [-0.8, 0.156]'
LONG = "a" * 5000  # past gunicorn's 4094-byte request line
R, ST, RES, PNG, MSG = "/v1/renders", "/v1/renders/<job_id>", "/v1/renders/<job_id>/result", "/v1/render.png", \
    "/v1/render.msgpack"
TILE = "/v1/tiles/<fractal>/<z>/<x>/<y>.png"
STATIC = "/static/<path:filename>"

CASES = [
    # --- POST /v1/renders: bodies that are not JSON, or not the JSON we take -------------------
    Case("submit-truncated-json", "api", R, post('{"c": [0,'), 400, field=None),
    Case("submit-single-quotes", "api", R, post("{'c': [0, 0]}"), 400, field=None),
    Case("submit-trailing-comma", "api", R, post('{"c": [0, 0],}'), 400, field=None),
    Case("submit-utf8-bom", "api", R, post("\ufeff" + spec()), 400, field=None),
    Case("submit-utf16-body", "api", R, post(spec().encode("utf-16"), "application/json; charset=utf-16"), 400),
    Case("submit-latin1-bytes", "api", R, post(b'{"c": [0, 0], "colormap": "caf\xe9"}'), 400),
    Case("submit-duplicate-key", "api", R, post(f'{{{C}, "width": 64, "width": 1e9}}'), 400, field="width"),
    Case("submit-deep-nesting", "api", R, post('{"c": ' + "[" * 30_000), 400, field=None),
    Case("submit-empty-body", "api", R, http("POST", R, content_type="application/json",
                                             headers=("Content-Length: 0",)), 400),
    Case("submit-whitespace-body", "api", R, post(" \r\n\t "), 400),
    Case("submit-text-plain", "api", R, post(spec(), "text/plain"), 400),
    Case("submit-form-encoded", "api", R, post("c=-0.8,0.156", "application/x-www-form-urlencoded"), 400),
    Case("submit-multipart", "api", R, post(b'--x\r\nContent-Disposition: form-data; name="c"\r\n\r\n0,0\r\n--x--\r\n',
                                            "multipart/form-data; boundary=x"), 400),
    Case("submit-xml", "api", R, post("<spec><c>0,0</c></spec>", "application/xml"), 400),
    Case("submit-no-content-type", "api", R, post(spec(), None), 400),
    Case("submit-json-lookalike-type", "api", R, post(spec(), "application/jsonx"), 400),
    # --- oversized and broken bodies --------------------------------------------------------------
    Case("submit-1mib-body", "api", R, post(spec(colormap="x" * (1 << 20))), 413),
    Case("submit-content-length-lies-huge", "api", R,
         http("POST", R, "{}", length=False, headers=("Content-Length: 99999999999",)), 413),
    Case("submit-chunked-over-limit", "api", R, chunked("POST", R, [b'{"c": [0, 0], "colormap": "'] +
                                                        [b"x" * 8192] * 10 + [b'"}']), 413),
    Case("submit-chunked-valid-prefix-then-padding", "api", R,
         chunked("POST", R, [spec().encode()] + [b" " * 8192] * 10), 413),
    Case("submit-chunked-bad-size", "api", R, chunked("POST", R, [], tail=b"zz\r\n{}\r\n0\r\n\r\n"), 400),
    Case("submit-content-length-and-chunked", "api", "", http("POST", R, "2\r\n{}\r\n0\r\n\r\n", length=False,
         headers=("Content-Length: 2", "Transfer-Encoding: chunked")), 400, GUNICORN),
    Case("submit-negative-content-length", "api", "", http("POST", R, "{}", length=False,
                                                          headers=("Content-Length: -1",)), 400, GUNICORN),
    # --- JSON that parses but is not a spec -------------------------------------------------------
    Case("submit-json-string", "api", R, post('"julia"'), 422, field=None),
    Case("submit-json-number", "api", R, post("42"), 422, field=None),
    Case("submit-json-array", "api", R, post("[[-0.8, 0.156]]"), 422, field=None),
    Case("submit-nan-center", "api", R, post(f'{{{C}, "center": [NaN, 0]}}'), 422, field="center"),
    Case("submit-minus-infinity-radius", "api", R, post(f'{{{C}, "escape_radius": -Infinity}}'), 422,
         field="escape_radius"),
    Case("submit-infinity-width", "api", R, post(f'{{{C}, "width": Infinity}}'), 422, field="width"),
    Case("submit-boolean-max-iter", "api", R, post(spec(max_iter=False)), 422, field="max_iter"),
    Case("submit-boolean-scale", "api", R, post(spec(scale=True)), 422, field="scale"),
    Case("submit-boolean-in-center", "api", R, post(spec(center=[0, True])), 422, field="center"),
    Case("submit-words-in-c", "api", R, post('{"c": ["-0.8", "zero"]}'), 422, field="c"),  # decimal text is fine
    Case("submit-c-as-object", "api", R, post('{"c": {"re": -0.8, "im": 0.156}}'), 422, field="c"),
    Case("submit-c-three-numbers", "api", R, post('{"c": [1, 2, 3]}'), 422, field="c"),
    Case("submit-zero-width", "api", R, post(spec(width=0)), 422, field="width"),
    Case("submit-negative-height", "api", R, post(spec(height=-1)), 422, field="height"),
    Case("submit-width-over-side", "api", R, post(spec(width=65_537)), 422, field="width"),
    Case("submit-width-400-digits", "api", R, post(f'{{{C}, "width": {"9" * 400}}}'), 422, field="width"),
    Case("submit-gigapixel-plus-one", "api", R, post(spec(width=65_536, height=16_385)), 422, field="width"),
    Case("submit-too-many-tiles", "api", R, post(spec(width=65_536, height=16_384, tile_size=16)), 422,
         field="tile_size"),
    Case("submit-zero-max-iter", "api", R, post(spec(max_iter=0)), 422, field="max_iter"),
    Case("submit-negative-max-iter", "api", R, post(spec(max_iter=-5)), 422, field="max_iter"),
    Case("submit-huge-max-iter", "api", R, post(spec(max_iter=1e20)), 422, field="max_iter"),
    Case("submit-zero-tile-size", "api", R, post(spec(tile_size=0)), 422, field="tile_size"),
    Case("submit-tile-size-over-max", "api", R, post(spec(tile_size=4097)), 422, field="tile_size"),
    Case("submit-negative-scale", "api", R, post(spec(scale=-3.2)), 422, field="scale"),
    Case("submit-scale-beyond-the-deepest", "api", R, post(spec(scale="1e-1001")), 422, field="scale"),
    Case("submit-escape-radius-too-big", "api", R, post(spec(escape_radius=1e101)), 422, field="escape_radius"),
    Case("submit-unknown-field", "api", R, post(spec(zoom=2)), 422, field="zoom"),
    Case("submit-unicode-field", "api", R, post(spec(wïdth=64)), 422, field="wïdth"),
    Case("submit-nul-field", "api", R, post('{"c": [0, 0], "\\u0000": 1}'), 422, field="\x00"),
    Case("submit-lone-surrogate-field", "api", R, post('{"c": [0, 0], "\\ud800": 1}'), 422),
    Case("submit-4000-unknown-fields", "api", R, post("{" + ",".join(f'"f{i}": {i}' for i in range(4000)) + "}"),
         422),
    Case("submit-unknown-format", "api", R, post(spec(format="gif")), 422, field="format"),
    Case("submit-format-uppercase", "api", R, post(spec(format="PNG")), 422, field="format"),
    Case("submit-unknown-colormap", "api", R, post(spec(colormap="jet")), 422, field="colormap"),
    Case("submit-empty-colormap", "api", R, post(spec(colormap="")), 422, field="colormap"),
    Case("submit-colormap-with-nul", "api", R, post(spec(colormap="ocean\x00")), 422, field="colormap"),
    Case("submit-unknown-fractal", "api", R, post(spec(fractal="burning_ship")), 422, field="fractal"),
    Case("submit-mandelbrot-with-garbage-c", "api", R, post('{"fractal": "mandelbrot", "c": "x"}'), 422, field="c"),
    Case("submit-wrong-method-put", "api", R, http("PUT", R, spec()), 405),
    Case("submit-wrong-method-delete", "api", R, http("DELETE", R), 405),
    Case("submit-wrong-method-get", "api", R, get(R), 405),
    # --- GET /v1/renders/{id}: ids that are not ids -------------------------------------------
    Case("status-dot-dot", "api", ST, get("/v1/renders/.."), 404, field="id"),
    Case("status-dot-dot-slash", "api", ST, get("/v1/renders/../../etc/passwd"), 404, field=None),
    Case("status-encoded-dot-dot", "api", ST, get("/v1/renders/%2e%2e"), 404, field="id"),
    Case("status-encoded-traversal", "api", ST, get("/v1/renders/%2e%2e%2f%2e%2e%2fetc%2fpasswd"), 404, field=None),
    Case("status-double-encoded", "api", ST, get("/v1/renders/%252e%252e%252f"), 404, field="id"),
    Case("status-backslashes", "api", ST, get("/v1/renders/..\\..\\etc"), 404, field="id"),
    Case("status-encoded-nul", "api", ST, get("/v1/renders/%00"), 404, field="id"),
    Case("status-id-then-nul", "api", ST, get(f"/v1/renders/{ID}%00"), 404, field="id"),
    Case("status-raw-nul", "api", "", get("/v1/renders/\x00"), 400, GUNICORN),
    Case("status-encoded-unicode", "api", ST, get("/v1/renders/" + "%C3%A9" * 32), 404, field="id"),
    Case("status-raw-utf8", "api", "", get("/v1/renders/" + "é" * 32), 400, GUNICORN),
    Case("status-invalid-utf8", "api", ST, get("/v1/renders/%ff%fe"), 404, field="id"),
    Case("status-uppercase-hex", "api", ST, get("/v1/renders/" + "A" * 32), 404, field="id"),
    Case("status-33-chars", "api", ST, get("/v1/renders/" + "0" * 33), 404, field="id"),
    Case("status-semicolon", "api", ST, get(f"/v1/renders/{ID};x=1"), 404, field="id"),
    Case("status-unknown-id", "api", ST, get(f"/v1/renders/{ID}"), 404, field="id"),
    Case("status-id-over-request-line", "api", "", get("/v1/renders/" + LONG), 414, GUNICORN),
    Case("status-wrong-method-post", "api", ST, http("POST", f"/v1/renders/{ID}", spec()), 405),
    Case("status-wrong-method-delete", "api", ST, http("DELETE", f"/v1/renders/{ID}"), 405),
    # --- GET /v1/renders/{id}/result ----------------------------------------------------------
    Case("result-dot-dot", "api", RES, get("/v1/renders/../result"), 404, field="id"),
    Case("result-encoded-dot-dot", "api", RES, get("/v1/renders/%2e%2e/result"), 404, field="id"),
    Case("result-encoded-nul", "api", RES, get("/v1/renders/%00/result"), 404, field="id"),
    Case("result-encoded-unicode", "api", RES, get("/v1/renders/" + "%E2%80%AE" * 10 + "/result"), 404, field="id"),
    Case("result-unknown-id", "api", RES, get(f"/v1/renders/{ID}/result"), 404, field="id"),
    Case("result-wrong-method-put", "api", RES, http("PUT", f"/v1/renders/{ID}/result", b"\x89PNG"), 405),
    # --- GET /v1/render.png and .msgpack: query strings ----------------------------------------
    Case("sync-nan-scale", "api", PNG, get("/v1/render.png?c=0,0&scale=NaN"), 422, field="scale"),
    Case("sync-infinity-c", "api", PNG, get("/v1/render.png?c=Infinity,0"), 422, field="c"),
    Case("sync-boolean-width", "api", PNG, get("/v1/render.png?c=0,0&width=true"), 422, field="width"),
    Case("sync-hex-width", "api", PNG, get("/v1/render.png?c=0,0&width=0x40"), 422, field="width"),
    Case("sync-fullwidth-digit", "api", PNG, get("/v1/render.png?c=0,0&width=%EF%BC%91"), 422, field="width"),
    Case("sync-arabic-indic-digit-in-c", "api", PNG, get("/v1/render.png?c=%D9%A1,0"), 422, field="c"),
    Case("sync-zero-width-space", "api", PNG, get("/v1/render.png?c=%E2%80%8B0,0"), 422, field="c"),
    Case("sync-zero-height", "api", PNG, get("/v1/render.png?c=0,0&height=0"), 422, field="height"),
    Case("sync-negative-width", "api", PNG, get("/v1/render.png?c=0,0&width=-64"), 422, field="width"),
    Case("sync-huge-width", "api", PNG, get("/v1/render.png?c=0,0&width=99999999999999999999999"), 422,
         field="width"),
    Case("sync-zero-max-iter", "api", PNG, get("/v1/render.png?c=0,0&max_iter=0"), 422, field="max_iter"),
    Case("sync-work-over-cap", "api", MSG, get("/v1/render.msgpack?c=0,0&width=1448&height=1448&max_iter=100000"),
         422, field="max_iter"),
    Case("sync-unknown-colormap", "api", PNG, get("/v1/render.png?c=0,0&colormap=jet"), 422, field="colormap"),
    Case("sync-unknown-fractal", "api", PNG, get("/v1/render.png?fractal=koch"), 422, field="fractal"),
    Case("sync-format-contradicts-path", "api", MSG, get("/v1/render.msgpack?c=0,0&format=png"), 422,
         field="format"),
    Case("sync-c-three-parts", "api", PNG, get("/v1/render.png?c=1,2,3"), 422, field="c"),
    Case("sync-bare-key", "api", PNG, get("/v1/render.png?c"), 422, field="c"),
    Case("sync-empty-key", "api", PNG, get("/v1/render.png?=5"), 422, field=""),
    Case("sync-nul-in-key", "api", PNG, get("/v1/render.png?c=0,0&c%00=1"), 422),
    Case("sync-nul-in-value", "api", PNG, get("/v1/render.png?c=0%000,0"), 422, field="c"),
    Case("sync-bad-percent", "api", PNG, get("/v1/render.png?c=%zz,0"), 422, field="c"),
    Case("sync-repeated-key", "api", MSG, get("/v1/render.msgpack?c=0,0&c=1,1"), 422, field="c"),
    Case("sync-300-unknown-keys", "api", PNG, get("/v1/render.png?c=0,0&" + "&".join(f"k{i}=1" for i in range(300))),
         422),
    Case("sync-query-over-request-line", "api", "", get("/v1/render.png?c=0,0&colormap=" + LONG), 414, GUNICORN),
    Case("sync-wrong-method-post", "api", PNG, http("POST", "/v1/render.png", spec()), 405),
    Case("sync-wrong-method-delete", "api", MSG, http("DELETE", "/v1/render.msgpack"), 405),
    # --- GET /v1/tiles/{fractal}/{z}/{x}/{y}.png ----------------------------------------------
    Case("tile-unknown-fractal", "api", TILE, get("/v1/tiles/koch/0/0/0.png?c=0,0"), 404),
    Case("tile-zoom-too-deep", "api", TILE, get("/v1/tiles/mandelbrot/1001/0/0.png"), 404, field="z"),
    Case("tile-x-outside-grid", "api", TILE, get("/v1/tiles/mandelbrot/1/2/0.png"), 404),
    Case("tile-negative-y", "api", TILE, get("/v1/tiles/mandelbrot/1/0/-1.png"), 404, field="y"),
    Case("tile-exponent-z", "api", TILE, get("/v1/tiles/mandelbrot/1e1/0/0.png"), 404, field="z"),
    Case("tile-encoded-traversal", "api", TILE, get("/v1/tiles/mandelbrot/0/0/%2e%2e%2f%2e%2e%2f0.png"), 404),
    Case("tile-julia-without-c", "api", TILE, get("/v1/tiles/julia/0/0/0.png"), 422, field="c"),
    Case("tile-nan-c", "api", TILE, get("/v1/tiles/julia/0/0/0.png?c=nan,0"), 422, field="c"),
    Case("tile-zero-max-iter", "api", TILE, get("/v1/tiles/mandelbrot/0/0/0.png?max_iter=0"), 422,
         field="max_iter"),
    Case("tile-unknown-colormap", "api", TILE, get("/v1/tiles/mandelbrot/0/0/0.png?colormap=jet"), 422,
         field="colormap"),
    Case("tile-unknown-parameter", "api", TILE, get("/v1/tiles/mandelbrot/0/0/0.png?width=4096"), 422,
         field="width"),
    Case("tile-repeated-parameter", "api", TILE, get("/v1/tiles/mandelbrot/0/0/0.png?max_iter=9&max_iter=9"), 422,
         field="max_iter"),
    Case("tile-query-over-1kib", "api", TILE, get("/v1/tiles/mandelbrot/0/0/0.png?colormap=" + "x" * 1100), 414),
    Case("tile-wrong-method-post", "api", TILE, http("POST", "/v1/tiles/mandelbrot/0/0/0.png", "{}"), 405),
    # --- operations, pages and static files ---------------------------------------------------
    Case("healthz-wrong-method", "api", "/healthz", http("POST", "/healthz", "{}"), 405),
    Case("healthz-query-over-request-line", "api", "", get("/healthz?" + LONG), 414, GUNICORN),
    Case("readyz-wrong-method", "api", "/readyz", http("DELETE", "/readyz"), 405),
    Case("openfaas-health-wrong-method", "api", "/_/health", http("PUT", "/_/health", "{}"), 405),
    Case("openfaas-ready-wrong-method", "api", "/_/ready", http("POST", "/_/ready", "{}"), 405),
    Case("openapi-wrong-method", "api", "/openapi.json", http("PUT", "/openapi.json", "{}"), 405),
    Case("explorer-wrong-method", "api", "/", http("POST", "/", "{}"), 405),
    Case("render-page-wrong-method", "api", "/render", http("PATCH", "/render", "{}"), 405),
    Case("static-dot-dot", "api", STATIC, get("/static/../routes.py"), 404),
    Case("static-encoded-traversal", "api", STATIC, get("/static/%2e%2e/%2e%2e/api/routes.py"), 404),
    Case("static-encoded-slash-traversal", "api", STATIC, get("/static/..%2f..%2fapi%2fapp.py"), 404),
    Case("static-encoded-backslash-traversal", "api", STATIC, get("/static/..%5c..%5capi%5capp.py"), 404),
    Case("static-wrong-method", "api", STATIC, http("DELETE", "/static/app.js"), 405),
    Case("unknown-route", "api", "", get("/v2/renders"), 404, field=None),
    Case("unknown-method-token", "api", "", http("BREW", "/healthz"), 405),
    # --- malformed HTTP: gunicorn answers before any application code -------------------------
    Case("http-version-9", "api", "", b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400, GUNICORN),
    Case("http-0.9-request-line", "api", "", b"GET /healthz\r\n\r\n", 400, GUNICORN),
    Case("http-lowercase-method", "api", "", b"get /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400, GUNICORN),
    Case("http-nul-in-header", "api", "", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, GUNICORN),
    Case("http-header-without-name", "api", "", b"GET /healthz HTTP/1.1\r\nHost: x\r\n: b\r\n\r\n", 400, GUNICORN),
    Case("http-obsolete-line-folding", "api", "", b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400,
         GUNICORN),
    Case("http-9kib-header", "api", "", http("GET", "/healthz", headers=("X-A: " + "a" * 9000,)), 431, GUNICORN),
    Case("http-150-headers", "api", "", http("GET", "/healthz", headers=tuple(f"X-{i}: 1" for i in range(150))), 431,
         GUNICORN),
    Case("http-tls-handshake", "api", "", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, None,
         CLOSED),
    # --- render_tile: POST / with a tile task -------------------------------------------------
    Case("tile-task-not-json", "render_tile", "/", post("render please", target="/"), 400),
    Case("tile-task-array", "render_tile", "/", post("[]", target="/"), 400),
    Case("tile-task-job-traversal", "render_tile", "/", post(task(job="../../etc/passwd"), target="/"), 404,
         field="id"),
    Case("tile-task-job-not-its-spec", "render_tile", "/", post(task(job="f" * 32), target="/"), 422, field="spec"),
    Case("tile-task-bad-spec", "render_tile", "/", post(task(spec={"c": [0, 0], "width": 0}), target="/"), 422,
         field="width"),
    Case("tile-task-negative-tile", "render_tile", "/", post(task(tile=-1), target="/"), 400, field="tile"),
    Case("tile-task-tile-past-the-end", "render_tile", "/", post(task(tile=10**6), target="/"), 400, field="tile"),
    Case("tile-task-boolean-tile", "render_tile", "/", post(task(tile=True), target="/"), 400, field="tile"),
    Case("tile-task-text-tile", "render_tile", "/", post(task(tile="0"), target="/"), 400, field="tile"),
    Case("tile-task-nan", "render_tile", "/", post(task().replace('"max_iter": 50', '"max_iter": NaN'), target="/"),
         422),
    Case("tile-task-oversized", "render_tile", "/", post(task(pad="x" * 70_000), target="/"), 413),
    Case("tile-task-broken-chunks", "render_tile", "/", chunked("POST", "/", [], tail=b"-1\r\n\r\n"), 400),
    Case("tile-task-wrong-method", "render_tile", "/", get("/"), 405),
    # --- assemble: POST / with {"job": id} -----------------------------------------------------
    Case("assemble-job-traversal", "assemble", "/", post('{"job": "../../etc/passwd"}', target="/"), 404,
         field="id"),
    Case("assemble-job-number", "assemble", "/", post('{"job": 5}', target="/"), 400, field="job"),
    Case("assemble-no-job", "assemble", "/", post("{}", target="/"), 400, field="job"),
    Case("assemble-unknown-job", "assemble", "/", post(json.dumps({"job": ID}), target="/"), 404, field="id"),
    Case("assemble-nul-job", "assemble", "/", post('{"job": "\\u0000"}', target="/"), 404, field="id"),
    Case("assemble-oversized", "assemble", "/", post('{"job": "' + "0" * 70_000 + '"}', target="/"), 413),
    Case("assemble-wrong-method", "assemble", "/", http("PUT", "/", "{}"), 405),
]


# --- the wire ------------------------------------------------------------------------------------

@dataclass
class Answer:
    status: int | None
    headers: dict[str, str]
    body: bytes


def send(port: int, raw: bytes, timeout: float = 20.0) -> Answer:
    """Write ``raw``, half-close, read until the server closes; parse status, headers and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            # the server answered (413, 400) and closed before reading everything (EPIPE, ECONNRESET,
            # or ENOTCONN from the half-close): read the answer
            pass
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    if not data:
        return Answer(None, {}, b"")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    match = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    assert match, f"not an HTTP answer: {data[:200]!r}"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(match.group(1)), headers, body)


@dataclass
class Targets:
    ports: dict[str, int]
    stores: list[Path]
    app_routes: set[str]
    logs: list[Path]

    def snapshot(self) -> list[list[str]]:
        return [store_snapshot(LocalStore(root)) for root in self.stores]


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Targets]:
    from fractally.config import Settings
    from functions.api.app import create_app

    root = tmp_path_factory.mktemp("hostile")
    functions_store = root / "functions-store"
    stack = Stack(render_workers=1, store_url=str(functions_store), log_dir=root / "stack",
                  base_env=hermetic_env(), startup_timeout=STARTUP_TIMEOUT)
    with running_server(root) as server, stack:
        app = create_app(Settings(store_url=str(root / "routes-only"), workers=1))
        routes = {rule.rule for rule in app.url_map.iter_rules()}
        app.extensions["fractally"].service.close()
        port = lambda url: int(url.rsplit(":", 1)[1])  # noqa: E731
        yield Targets({"api": port(server.url), "render_tile": port(stack.urls.render_tile),
                       "assemble": port(stack.urls.assemble)}, [server.store_root, functions_store], routes,
                      [root / "serve.err", root / "serve.out", *sorted((root / "stack").glob("*.log"))])


# --- the tests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_request_is_refused_and_changes_nothing(targets, case):
    before = targets.snapshot()
    answer = send(targets.ports[case.server], case.raw)
    text = answer.body.decode("utf-8", "replace")
    assert answer.status == case.status, f"{answer.status}: {text[:300]}"
    if case.answer == JSON:
        assert answer.headers.get("content-type") == "application/json", answer.headers
        body = json.loads(answer.body)
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "field"}, body
        assert isinstance(body["error"]["code"], str) and body["error"]["message"], body
        if case.field != "":
            assert body["error"]["field"] == case.field, body
    elif case.answer == GUNICORN:
        assert answer.headers.get("content-type", "").startswith("text/html"), answer.headers
    assert not [word for word in LEAKS if word in text]
    # No waiting: every handler writes before it answers (a job accepted by mistake has its spec.json in
    # the store by the time its 202 is sent), so the store is compared as soon as the answer is in.
    assert targets.snapshot() == before


def test_every_route_has_hostile_cases(targets):
    """A new endpoint without a row in the table fails here (api routes; functions serve only ``/``)."""
    covered = {case.route for case in CASES if case.server == "api"}
    assert targets.app_routes - covered == set()


def test_every_function_endpoint_has_hostile_cases():
    assert {case.server for case in CASES if case.route == "/"} >= {"render_tile", "assemble"}


def test_the_table_covers_every_kind_of_answer():
    """The table is honest about who answers: our JSON, gunicorn's own 4xx, and a closed connection."""
    assert {case.answer for case in CASES} == {JSON, GUNICORN, CLOSED}
    assert all(case.status is None or 400 <= case.status < 500 for case in CASES)


def test_no_hostile_request_makes_a_server_log_a_trace(targets):
    """An unexpected exception is logged with its trace: the whole table is sent here (so the test holds
    on its own, in any order), then every server's log is read."""
    assert targets.logs and all(path.is_file() for path in targets.logs)
    for case in CASES:
        send(targets.ports[case.server], case.raw)
    traces = [path.name for path in targets.logs if "Traceback" in path.read_text(errors="replace")]
    assert traces == []
