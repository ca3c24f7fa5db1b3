"""render_tile: a batch of a job's tiles (or one tile), computed and written to the store (idempotent)."""

from __future__ import annotations

from typing import Any

from fractally.jobs import tasks
from fractally.store import ObjectStore


def handle(event: Any, store: ObjectStore) -> dict[str, Any]:
    """``event`` is a batch of tiles ``{"job", "spec", "first", "count"}`` or one tile ``{"job", "spec",
    "tile"}``; answers what was stored and its timings (``tasks.render``)."""
    return tasks.render(event, store)
