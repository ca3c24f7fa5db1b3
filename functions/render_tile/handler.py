"""render_tile: one tile of a job, computed and written to the store (idempotent)."""

from __future__ import annotations

from typing import Any

from fractally import tasks
from fractally.store import ObjectStore


def handle(event: Any, store: ObjectStore) -> dict[str, Any]:
    """``event`` is a tile task ``{"job", "spec", "tile"}``; answers its key, timings and ``cached``."""
    return tasks.render_tile(event, store)
