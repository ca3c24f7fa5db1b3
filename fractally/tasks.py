"""The work the functions do, as plain Python over the store: one tile, one assembly.

``functions/render_tile`` and ``functions/assemble`` are HTTP adapters over these;
the in-process invoker and the queue worker call them directly. Both are
idempotent: a tile already stored is not rendered again, and a result is
written with put-if-absent, so repeats and races leave one result.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

from fractally import jobs
from fractally.codec import decode_tile, encode_tile
from fractally.compose import CONTENT_TYPES, Band, write_image
from fractally.errors import BadRequest, KeyNotFound, SpecError
from fractally.spec import parse_spec
from fractally.store import ObjectStore
from fractally.tiling import band, grid, render_tile_arrays, tile

#: An assembly claim older than this is taken to belong to a dead assembler.
CLAIM_TIMEOUT = 600.0


def parse_tile_task(task: Any) -> tuple[str, Any, int]:
    """Validate a tile task (it may come from the network): (job id, spec, tile index)."""
    if not isinstance(task, dict):
        raise BadRequest("a tile task is a JSON object with job, spec and tile")
    job_id = jobs.check_job_id(task.get("job"))
    spec = parse_spec(task.get("spec"))
    if spec.content_hash() != job_id:
        raise SpecError("the task's spec does not belong to its job id", "spec")
    index = task.get("tile")
    if isinstance(index, bool) or not isinstance(index, int):
        raise BadRequest("tile must be a whole number", "tile")
    return job_id, spec, index


def render_tile(task: dict, store: ObjectStore) -> dict[str, Any]:
    """Render one tile into the store unless it is already there."""
    started = time.perf_counter()
    job_id, spec, index = parse_tile_task(task)
    try:
        t = tile(spec, index)
    except IndexError as err:
        raise BadRequest(str(err), "tile") from None
    key = jobs.tile_key(spec.pixels_hash(), index)
    if store.exists(key):
        return {"job": job_id, "tile": index, "key": key, "cached": True,
                "seconds": {"total": time.perf_counter() - started}}
    t0 = time.perf_counter()
    counts, smooth = render_tile_arrays(spec, t)
    t1 = time.perf_counter()
    data = encode_tile(counts, smooth, spec.max_iter)
    store.put(key, data)
    t2 = time.perf_counter()
    return {"job": job_id, "tile": index, "key": key, "cached": False,
            "seconds": {"render": t1 - t0, "encode_store": t2 - t1, "total": t2 - started}}


def _bands(store: ObjectStore, job: jobs.Job) -> Iterator[Band]:
    """Read the job's tiles one band at a time (memory: one band)."""
    rows, _ = grid(job.spec)
    for r in range(rows):
        parts = []
        for t in band(job.spec, r):
            decoded = decode_tile(store.get(jobs.tile_key(job.pixels_hash, t.index)))
            parts.append((decoded.counts, decoded.smooth))
        yield parts


def _claim(store: ObjectStore, job_id: str) -> bool:
    """Take the job's assembly unless a live assembler holds it."""
    body = json.dumps({"by": f"{socket.gethostname()}:{os.getpid()}", "at": time.time()}).encode()
    if store.put_if_absent(jobs.claim_key(job_id), body, "application/json"):
        return True
    try:
        held_at = float(json.loads(store.get(jobs.claim_key(job_id)))["at"])
    except (KeyNotFound, ValueError, KeyError):
        held_at = 0.0
    if time.time() - held_at < CLAIM_TIMEOUT:
        return False
    store.put(jobs.claim_key(job_id), body, "application/json")  # the holder is gone: take over
    return True


def assemble(job_id: str, store: ObjectStore, *, force: bool = False) -> dict[str, Any]:
    """Compose the job's tiles into its result, once.

    Returns ``{"status": "done" | "busy" | "incomplete", ...}``. ``force`` ignores a
    live claim (two forced assembles still give one result: put-if-absent).
    """
    started = time.perf_counter()
    job = jobs.load(store, job_id)
    if store.exists(job.result_key):
        return {"job": job_id, "status": "done", "key": job.result_key, "written": False}
    missing = jobs.missing_tiles(store, job)
    if missing:
        return {"job": job_id, "status": "incomplete", "missing": len(missing)}
    if not force and not _claim(store, job_id):
        return {"job": job_id, "status": "busy"}
    fd, tmp = tempfile.mkstemp(prefix="fractally-result-")
    try:
        with os.fdopen(fd, "wb") as out, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            write_image(job.spec, _bands(store, job), out, pool)
        size = os.path.getsize(tmp)
        written = store.put_file(job.result_key, tmp, CONTENT_TYPES[job.spec.format], if_absent=True)
    finally:
        os.unlink(tmp)
        store.delete(jobs.claim_key(job_id))  # also on failure, so a retry can assemble at once
    return {"job": job_id, "status": "done", "key": job.result_key, "written": written, "bytes": size,
            "seconds": time.perf_counter() - started}
