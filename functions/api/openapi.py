"""The OpenAPI 3.1 document of the public API (docs/api.md), built in code from the core's own constants.

Every limit below is read from ``fractally.picture.spec`` (and the colormaps from ``fractally.picture.colour``), so
the document cannot drift from what ``parse_spec`` enforces; tests check that every route of the
app is documented and every documented path exists.
"""

from __future__ import annotations

import math
from typing import Any

from fractally.picture.decimals import MAX_DIGITS, MAX_TEXT, canonical
from fractally.picture import spec as S
from fractally.jobs import STATUSES

API_VERSION = "1.0.0"
JOB_ID_PATTERN = "^[0-9a-f]{32}$"
PAIR_PATTERN = r"^\s*[-+0-9.eE]+\s*,\s*[-+0-9.eE]+\s*$"


def _ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


#: A coordinate given as text: any number of digits (deep views), read exactly (fractally/picture/decimals.py).
DECIMAL_PATTERN = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,8})?\s*$"


def _coordinate(number: dict[str, Any]) -> dict[str, Any]:
    """A JSON number within ``number``'s bounds, or a decimal string of any precision."""
    text = {"type": "string", "pattern": DECIMAL_PATTERN, "maxLength": MAX_TEXT,
            "description": f"a decimal number as text, up to {MAX_DIGITS} significant digits, read exactly"}
    return {"oneOf": [{"type": "number", **number}, text]}


def _pair(description: str, default: list[float] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "array",
        "description": description,
        "items": _coordinate({"minimum": -S.MAX_COORD, "maximum": S.MAX_COORD}),
        "minItems": 2,
        "maxItems": 2,
    }
    if default is not None:
        schema["default"] = default
    return schema


def spec_schema() -> dict[str, Any]:
    """The render spec (docs/api.md, "The picture a spec describes") with every per-field limit."""
    from fractally.picture.colour import COLORMAPS, DEFAULT_COLORMAP

    d = S.DEFAULTS
    return {
        "type": "object",
        "title": "RenderSpec",
        "description": (
            "A picture. Pixel (row i, column j) has its centre at x = center.x + (j + 0.5 - width/2) * scale/width, "
            "y = center.y - (i + 0.5 - height/2) * scale/width; counts are exact IEEE float64 (docs/api.md) unless "
            "precision is float32. "
            "Limits across fields: width × height ≤ "
            f"{S.MAX_JOB_PIXELS} per job, ≤ {S.MAX_MSGPACK_PIXELS} for a msgpack result, ≤ {S.MAX_SYNC_PIXELS} "
            f"for a synchronous render, where also width × height × max_iter ≤ {S.MAX_SYNC_WORK}; at most "
            f"{S.MAX_TILES} tiles per job. A view with scale/width below {S.MIN_SPACING_ULPS} float64 ulps of the "
            "largest coordinate is deep: rendered by perturbation around one arbitrary-precision reference orbit, "
            "the same bits on every machine and tiling, not bit-equal to exact arithmetic (docs/api.md). center, scale "
            "and c may be decimal strings of any length. Unknown fields are rejected; null means the default; integral floats (1024.0) are "
            "accepted for integer fields; NaN, infinities and booleans are not numbers."
        ),
        "additionalProperties": False,
        "properties": {
            "fractal": {"type": "string", "enum": list(S.FRACTALS), "default": d["fractal"],
                        "description": "julia: z₀ = pixel, z ↦ z² + c; mandelbrot: z₀ = 0, c = pixel"},
            "c": _pair("[re, im], the Julia parameter; required for julia, ignored for mandelbrot"),
            "center": _pair("[x, y], the complex coordinate of the image centre", list(d["center"])),
            "scale": {**_coordinate({"exclusiveMinimum": 0, "maximum": S.MAX_COORD}), "default": d["scale"],
                      "description": (
                          "width of the view in complex units; the height is scale × height / width. Below "
                          "float64's resolution the view is deep (perturbation, docs/api.md \"Deep views\"): "
                          f"scale ≥ {canonical(S.MIN_DEEP_SCALE)}, max_iter ≤ {S.MAX_DEEP_ITER}, precision float64")},
            "width": {"type": "integer", "minimum": 1, "maximum": S.MAX_SIDE, "default": d["width"]},
            "height": {"type": "integer", "minimum": 1, "maximum": S.MAX_SIDE, "default": d["height"]},
            "max_iter": {"type": "integer", "minimum": 1, "maximum": S.MAX_ITER, "default": d["max_iter"]},
            "escape_radius": {"type": "number", "minimum": 2, "maximum": S.MAX_ESCAPE_RADIUS,
                              "default": d["escape_radius"]},
            "tile_size": {"type": "integer", "minimum": S.MIN_TILE, "maximum": S.MAX_TILE,
                          "default": d["tile_size"], "description": "edge of the square tiles the job is cut into"},
            "format": {"type": "string", "enum": list(S.FORMATS), "default": d["format"]},
            "colormap": {"type": "string", "enum": list(COLORMAPS), "default": DEFAULT_COLORMAP,
                         "description": "PNG colouring; ignored for msgpack"},
            "precision": {
                "type": "string", "enum": list(S.PRECISIONS), "default": d["precision"],
                "description": (
                    "float64: docs/api.md's exact rule, bit for bit. float32 (opt-in): the same rule in IEEE float32, "
                    "faster; counts differ from float64 on some boundary pixels (the picture looks the same). "
                    f"float32 is allowed only while scale / width ≥ 2^{math.log2(S.FLOAT32_MIN_SPACING):g} × max(1, "
                    "|center.x| + scale, |center.y| + scale × height / width, |c.re|, |c.im|) (every pixel within "
                    f"1/16 pixel of its exact place) and escape_radius ≤ {S.FLOAT32_MAX_ESCAPE_RADIUS:g}; "
                    "otherwise the spec is rejected with field precision"
                ),
            },
        },
        "anyOf": [
            {"required": ["c"], "properties": {"c": {"type": "array"}}},  # null c means none
            {"required": ["fractal"], "properties": {"fractal": {"const": "mandelbrot"}}},
        ],
        "examples": [
            {"c": [-0.8, 0.156], "width": 1280, "height": 720, "max_iter": 500},
            {"fractal": "mandelbrot", "center": [-0.7435, 0.1314], "scale": 0.004, "colormap": "dusk"},
        ],
    }


def _nullable_fields(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON body may give any field as null, meaning its default (``parse_spec`` reads it so)."""
    for prop in schema["properties"].values():
        if "oneOf" in prop:  # a number or a decimal string
            prop["oneOf"] = [*prop["oneOf"], {"type": "null"}]
            continue
        prop["type"] = [prop["type"], "null"]
        if "enum" in prop:
            prop["enum"] = [*prop["enum"], None]
    return schema


def _schemas() -> dict[str, Any]:
    return {
        "RenderSpec": _nullable_fields(spec_schema()),
        "ErrorDetail": {
            "type": "object",
            "required": ["code", "message", "field"],
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable",
                         "examples": ["invalid_spec", "bad_request", "not_found", "not_ready",
                                      "payload_too_large", "unauthorized", "method_not_allowed", "busy"]},
                "message": {"type": "string", "description": "for a person: names the field, says what is allowed"},
                "field": {"type": ["string", "null"], "description": "the offending spec field, if one is"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": _ref("ErrorDetail")},
        },
        "RenderStatus": {
            "type": "object",
            "required": ["id", "status", "progress", "spec", "links"],
            "properties": {
                "id": {"type": "string", "pattern": JOB_ID_PATTERN,
                       "description": "the normalized spec's content hash: an identical spec has the same id"},
                "status": {"type": "string", "enum": list(STATUSES)},
                "progress": {
                    "type": "object",
                    "required": ["tiles_done", "tiles_total"],
                    "properties": {"tiles_done": {"type": "integer", "minimum": 0},
                                   "tiles_total": {"type": "integer", "minimum": 1}},
                },
                "spec": {**_ref("RenderSpec"), "description": "the normalized spec (defaults filled in)"},
                "result": {
                    "type": "object",
                    "description": "present when status is done",
                    "required": ["url", "format"],
                    "properties": {
                        "url": {"type": "string", "format": "uri",
                                "description": "a presigned object-store URL (S3/MinIO store), or this api's "
                                               "/v1/renders/{id}/result (local-folder store)"},
                        "format": {"type": "string", "enum": list(S.FORMATS)},
                    },
                },
                "error": {**_ref("ErrorDetail"), "description": "present when status is failed"},
                "links": {
                    "type": "object",
                    "required": ["self", "result"],
                    "properties": {"self": {"type": "string"}, "result": {"type": "string"}},
                },
            },
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    }


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _responses(max_body: int) -> dict[str, Any]:
    return {
        "BadRequest": _error("malformed request: not JSON, wrong content type, a key given twice (field null "
                             "unless a field is to blame)"),
        "InvalidSpec": _error("the spec is invalid: error.field names the field, error.message what is allowed"),
        "NotFound": _error("no render with this id (ids are 32 hexadecimal characters)"),
        "TooLarge": _error(f"the request body is over {max_body} bytes"),
        "Unauthorized": _error("the service has a token and the request has no valid Authorization: Bearer header"),
        "StoreUnavailable": _error("the object store cannot be reached; retry later"),
    }


def _query_parameters() -> list[dict[str, Any]]:
    spec = spec_schema()["properties"]
    params: list[dict[str, Any]] = []
    for name in S.FIELDS:
        if name in ("c", "center"):
            schema: dict[str, Any] = {"type": "string", "pattern": PAIR_PATTERN}
            example = "-0.8,0.156" if name == "c" else "0,0"
            description = f"{name} as two numbers separated by a comma ({spec[name]['description']})"
        elif name == "scale":  # text in a query: any number of digits
            schema = {"type": "string", "pattern": DECIMAL_PATTERN, "maxLength": MAX_TEXT}
            example = "3.2"
            description = spec[name]["description"]
        else:
            schema = {k: v for k, v in spec[name].items() if k != "description"}
            example = None
            description = spec[name].get("description", "")
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema,
                                 "description": description or f"the spec's {name}"}
        if example is not None:
            param["example"] = example
        params.append(param)
    return params


def _sync_render(fmt: str, media_type: str, max_query: int) -> dict[str, Any]:
    return {
        "get": {
            "operationId": f"render_{fmt}",
            "summary": f"Render a small image now and return the {fmt} bytes",
            "description": (
                "The spec as query parameters (c=re,im, center=x,y, other fields by name; each at most once, "
                f"each value at most 256 characters, the query string at most {max_query} bytes). At most "
                f"{S.MAX_SYNC_PIXELS} pixels and width × height × max_iter ≤ {S.MAX_SYNC_WORK}; bigger images "
                "go through POST /v1/renders. format, if given, must match the path."
            ),
            "tags": ["renders"],
            "parameters": _query_parameters(),
            "responses": {
                "200": {"description": f"the {fmt} image",
                        "headers": {"Content-Disposition": {"schema": {"type": "string"},
                                                            "description": f"inline; filename=render.{fmt}"}},
                        "content": {media_type: {}}},
                "400": _ref("BadRequest", "responses"),
                "414": _error("the query string is too long"),
                "422": _ref("InvalidSpec", "responses"),
                "503": _error("every synchronous-render slot is busy (code busy, with Retry-After)"),
            },
        }
    }


def _tile() -> dict[str, Any]:
    """``/v1/tiles/{fractal}/{z}/{x}/{y}.png``: the XYZ scheme of ``fractally.jobs.xyz``, stated from its constants."""
    from fractally.jobs import xyz
    from fractally.picture.colour import COLORMAPS, DEFAULT_COLORMAP

    def path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}

    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}

    width = f"{xyz.EXTENT:g} / 2^z"
    return {
        "get": {
            "operationId": "tile_png",
            "summary": f"One {xyz.TILE_PIXELS}×{xyz.TILE_PIXELS} PNG tile of the explorer's XYZ pyramid",
            "description": (
                f"Tile 0/0/0 covers real ∈ [{xyz.LEFT:g}, {xyz.LEFT + xyz.EXTENT:g}] and imaginary ∈ "
                f"[{xyz.TOP - xyz.EXTENT:g}, {xyz.TOP:g}]; zoom z has 2^z × 2^z tiles, each {width} wide; x counts "
                "columns from the left (real −2), y rows from the top (imaginary +2). The tile is the render spec "
                f"center = its centre, scale = {width}, width = height = tile_size = {xyz.TILE_PIXELS}, format png, "
                f"max_iter = min({xyz.ITER_CAP}, {xyz.ITER_BASE} + {xyz.ITER_PER_ZOOM}·z) unless given "
                f"(beyond z = {xyz.MAX_ZOOM} the cap is {xyz.DEEP_ITER_CAP}). "
                "The response is immutable: ETag is the spec's content hash, If-None-Match answers 304."
            ),
            "tags": ["tiles"],
            "parameters": [
                path("fractal", {"type": "string", "enum": list(S.FRACTALS)}, "julia or mandelbrot"),
                path("z", {"type": "integer", "minimum": 0, "maximum": xyz.MAX_DEEP_ZOOM},
                     f"zoom level (beyond {xyz.MAX_ZOOM}: a deep view, its centre and width exact decimals)"),
                path("x", {"type": "integer", "minimum": 0}, "column, 0 … 2^z − 1, from the left"),
                path("y", {"type": "integer", "minimum": 0}, "row, 0 … 2^z − 1, from the top"),
                {**query("c", {"type": "string", "pattern": PAIR_PATTERN},
                         "re,im: the Julia parameter; required for julia, ignored for mandelbrot"),
                 "example": "-0.8,0.156"},
                query("colormap", {"type": "string", "enum": list(COLORMAPS), "default": DEFAULT_COLORMAP},
                      "PNG colouring"),
                query("max_iter", {"type": "integer", "minimum": 1, "maximum": S.MAX_ITER},
                      f"iteration limit (default: the zoom rule above; at most {S.MAX_SYNC_WORK} pixel-iterations "
                      "per tile, as for a synchronous render)"),
            ],
            "responses": {
                "200": {
                    "description": "the tile",
                    "headers": {
                        "ETag": {"schema": {"type": "string"}, "description": "the tile spec's content hash, quoted"},
                        "Cache-Control": {"schema": {"type": "string"},
                                          "description": "public, max-age=31536000, immutable"},
                    },
                    "content": {"image/png": {}},
                },
                "304": {"description": "If-None-Match named this tile's ETag: nothing is rendered or read"},
                "404": _error("no such tile: z outside 0 … 1000, x or y outside 0 … 2^z − 1, or an unknown fractal "
                              "(error.field says which)"),
                "414": _error("the query string is too long"),
                "422": _ref("InvalidSpec", "responses"),
                "503": _error("too many tiles are being rendered (code busy, with Retry-After), or the object "
                              "store cannot be reached"),
            },
        }
    }


def _paths(max_query: int) -> dict[str, Any]:
    job_id = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": JOB_ID_PATTERN}}
    status_json = {"application/json": {"schema": _ref("RenderStatus")}}
    return {
        "/v1/renders": {
            "post": {
                "operationId": "submit_render",
                "summary": "Queue a render job (or find the identical one)",
                "description": (
                    "Validates the spec, writes the job and fans its tiles out. The job id is the normalized "
                    "spec's hash, so an identical spec answers with the existing job and renders nothing again. "
                    "The answer is always 202, also for an existing job that is already done: then its status "
                    "is done and result.url is set, so there is nothing to poll. A failed job is retried."
                ),
                "tags": ["renders"],
                "security": [{}, {"bearerAuth": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RenderSpec")}}},
                "responses": {
                    "202": {"description": "the job, new or existing", "content": status_json,
                            "headers": {"Location": {"schema": {"type": "string", "format": "uri"},
                                                     "description": "the job's status URL"}}},
                    "400": _ref("BadRequest", "responses"),
                    "401": _ref("Unauthorized", "responses"),
                    "413": _ref("TooLarge", "responses"),
                    "422": _ref("InvalidSpec", "responses"),
                    "503": _ref("StoreUnavailable", "responses"),
                },
            }
        },
        "/v1/renders/{id}": {
            "get": {
                "operationId": "render_status",
                "summary": "Where a render job is",
                "description": "Status is read off the object store: queued, running, assembling, done or failed.",
                "tags": ["renders"],
                "parameters": [job_id],
                "responses": {
                    "200": {"description": "the job's status", "content": status_json},
                    "404": _ref("NotFound", "responses"),
                    "503": _ref("StoreUnavailable", "responses"),
                },
            }
        },
        "/v1/renders/{id}/result": {
            "get": {
                "operationId": "render_result",
                "summary": "The finished image",
                "description": (
                    "With an S3/MinIO store: a 302 to a presigned URL. With a local-folder store: the bytes, "
                    "streamed, with Content-Disposition: inline; filename=<id>.<format>, ETag and range support. "
                    "A msgpack result is a map with width, height, max_iter, dtype (uint32), counts (raw "
                    "little-endian bytes, row-major), smooth (float32) and the spec."
                ),
                "tags": ["renders"],
                "parameters": [job_id],
                "responses": {
                    "200": {"description": "the result", "content": {"image/png": {}, "application/msgpack": {}}},
                    "302": {"description": "redirect to the object store",
                            "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}}},
                    "404": _error("unknown id (code not_found), or no result yet (code not_ready; the message "
                                  "says the status)"),
                },
            }
        },
        "/v1/render.png": _sync_render("png", "image/png", max_query),
        "/v1/render.msgpack": _sync_render("msgpack", "application/msgpack", max_query),
        "/v1/tiles/{fractal}/{z}/{x}/{y}.png": _tile(),
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness (no store access)",
                "tags": ["operations"],
                "responses": {"200": {"description": "alive", "content": {
                    "application/json": {"schema": _ref("Health"), "example": {"status": "ok"}}}}},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: the object store answers",
                "tags": ["operations"],
                "responses": {
                    "200": {"description": "ready", "content": {
                        "application/json": {"schema": _ref("Health"), "example": {"status": "ready"}}}},
                    "503": _ref("StoreUnavailable", "responses"),
                },
            }
        },
        "/_/health": {
            "get": {
                "operationId": "openfaas_health",
                "summary": "Liveness, as /healthz, at the path OpenFaaS Community Edition probes",
                "tags": ["operations"],
                "responses": {"200": {"description": "alive", "content": {
                    "application/json": {"schema": _ref("Health"), "example": {"status": "ok"}}}}},
            }
        },
        "/_/ready": {
            "get": {
                "operationId": "openfaas_ready",
                "summary": "Readiness, as /readyz, at the path OpenFaaS's readiness annotation names",
                "tags": ["operations"],
                "responses": {
                    "200": {"description": "ready", "content": {
                        "application/json": {"schema": _ref("Health"), "example": {"status": "ready"}}}},
                    "503": _ref("StoreUnavailable", "responses"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["operations"],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
            }
        },
        "/": {
            "get": {
                "operationId": "explorer",
                "summary": "The web explorer: the Mandelbrot set as a map of Julia sets, over XYZ tiles",
                "tags": ["operations"],
                "responses": {"200": {"description": "an HTML page", "content": {"text/html": {}}}},
            }
        },
        "/render": {
            "get": {
                "operationId": "render_form",
                "summary": "The render form: a spec's fields, a live preview, a job's progress",
                "tags": ["operations"],
                "responses": {"200": {"description": "an HTML page", "content": {"text/html": {}}}},
            }
        },
    }


def document(public_url: str | None = None, max_body: int = 64 * 1024, max_query: int = 4096) -> dict[str, Any]:
    """The whole document; ``public_url`` (if the api sits behind a gateway) becomes its server.

    The request-size limits are the app's (passed in by the route), so the text states what is enforced.
    """
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Fractal.ly",
            "version": API_VERSION,
            "summary": "Julia and Mandelbrot sets rendered as a service",
            "description": (
                "Submit a render spec, poll its status, fetch the result; or render a small image "
                "synchronously. Every error is JSON: {\"error\": {\"code\", \"message\", \"field\"}}; a bad "
                "request gets a 4xx, queues nothing and writes nothing. Request bodies are limited to "
                f"{max_body} bytes; query strings to {max_query} bytes."
            ),
        },
        "tags": [{"name": "renders"}, {"name": "tiles"}, {"name": "operations"}],
        "paths": _paths(max_query),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(max_body),
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "only when the service is configured with FRACTALLY_AUTH_TOKEN; only for writes",
            }},
        },
    }
    _add_server_limits(doc["paths"])
    if public_url:
        doc["servers"] = [{"url": public_url.rstrip("/")}]
    return doc


#: gunicorn's own limit (``limit_request_line``): a longer request line never reaches the app.
MAX_REQUEST_LINE = 4094


def _add_server_limits(paths: dict[str, Any]) -> None:
    """Every operation can meet the HTTP server's request-line limit, which it answers in HTML."""
    for item in paths.values():
        for operation in item.values():
            response = operation["responses"].setdefault("414", _error("the query string is too long"))
            response["description"] = (
                f"{response['description']}; a request line (method, path and query) over {MAX_REQUEST_LINE} "
                "bytes is refused by the HTTP server itself, with a small HTML page, before the API sees it")
            response["content"]["text/html"] = {"schema": {"type": "string"}}
