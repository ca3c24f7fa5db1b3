"""assemble: compose a job's tiles into its result, once (repeats and races leave one result)."""

from __future__ import annotations

from typing import Any

from fractally.jobs import tasks
from fractally.errors import BadRequest
from fractally.store import ObjectStore


def handle(event: Any, store: ObjectStore) -> dict[str, Any]:
    """``event`` is ``{"job": "<id>"}``: the result, answering ``{"status": "done" | "busy" | "incomplete",
    ...}``; or ``{"job": "<id>", "bands": [first, end]}``: only those tile rows' piece of it."""
    if not isinstance(event, dict) or not isinstance(event.get("job"), str):
        raise BadRequest('an assemble request is a JSON object {"job": "<job id>"}', "job")
    if "bands" in event:
        return tasks.assemble_bands(event["job"], event["bands"], store)
    return tasks.assemble(event["job"], store)
