"""Schemathesis hooks for tests/web/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

Generated specs that the service would *accept* can be enormous (a gigapixel job at 100 000
iterations is valid and takes CPU-days), and a CI run has two cores and two minutes. So a case
whose body or query is a valid spec and is expensive is shrunk before it is sent: fewer pixels,
fewer iterations, bigger tiles, still valid. A case the service rejects is sent exactly as generated.
"""

from __future__ import annotations

import math
from typing import Any

import schemathesis

from fractally.errors import FractallyError
from fractally.picture.spec import parse_spec, spec_from_query

#: Most pixel-iterations one generated request may cost (about 40 ms of one core).
MAX_WORK = 20_000_000
#: Most pixels and tiles one generated job may have.
MAX_JOB_PIXELS, MAX_JOB_TILES = 256 * 256, 16


def _valid(parse: Any) -> Any:
    try:
        return parse()
    except (FractallyError, TypeError, ValueError, AttributeError, RecursionError):
        return None


def _shrink_job(body: dict[str, Any]) -> None:
    spec = _valid(lambda: parse_spec(body))
    if spec is None:
        return
    tiles = math.ceil(spec.width / spec.tile_size) * math.ceil(spec.height / spec.tile_size)
    if spec.pixels <= MAX_JOB_PIXELS and tiles <= MAX_JOB_TILES and spec.pixels * spec.max_iter <= MAX_WORK:
        return
    body["width"], body["height"] = min(spec.width, 256), min(spec.height, 256)
    body["tile_size"] = max(spec.tile_size, 64)
    body["max_iter"] = max(1, min(spec.max_iter, MAX_WORK // (body["width"] * body["height"])))


def _shrink_sync(query: dict[str, Any]) -> None:
    if any(isinstance(v, (list, tuple, dict)) for v in query.values()):
        return
    spec = _valid(lambda: parse_spec(spec_from_query({k: str(v) for k, v in query.items()}), sync=True))
    if spec is None or spec.pixels * spec.max_iter <= MAX_WORK:
        return
    query["max_iter"] = max(1, MAX_WORK // spec.pixels)


def _shrink_tile(path: dict[str, Any], query: dict[str, Any]) -> None:
    from fractally.jobs import xyz

    if any(isinstance(v, (list, tuple, dict)) for v in query.values()):
        return
    spec = _valid(lambda: xyz.spec_from_request(*(str(path.get(k)) for k in ("fractal", "z", "x", "y")),
                                                {k: str(v) for k, v in query.items()}))
    if spec is not None and spec.pixels * spec.max_iter > MAX_WORK:
        query["max_iter"] = max(1, MAX_WORK // spec.pixels)  # also when it was left to its default


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    operation = case.operation
    if operation.method.upper() == "POST" and operation.path == "/v1/renders" and isinstance(case.body, dict):
        _shrink_job(case.body)
    elif operation.path.startswith("/v1/render.") and isinstance(case.query, dict):
        _shrink_sync(case.query)
    elif operation.path.startswith("/v1/tiles/") and isinstance(case.path_parameters, dict):
        if case.query is None:
            case.query = {}
        if isinstance(case.query, dict):
            _shrink_tile(case.path_parameters, case.query)
