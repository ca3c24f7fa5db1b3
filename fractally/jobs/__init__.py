"""A job's state, kept only in the object store, and derived from what is there.

Layout (every key built from hashes, never from user text)::

    jobs/<job id>/spec.json        the manifest: normalized spec, tile count, pixels hash
    jobs/<job id>/result.<format>  the finished image (written once, put-if-absent)
    jobs/<job id>/failed.json      why the job failed, if it did
    jobs/<job id>/assemble.claim   who is assembling since when (to avoid double work)
    jobs/<job id>/dispatch.lease   which api replica fans the job out, renewed while it does (so another
                                   carries it on when that one is gone; fractally/jobs/lease.py)
    jobs/<job id>/pieces/...       the result's bands, made in parallel, until they are joined
                                   (fractally/jobs/pieces.py)
    tiles/<pixels hash>/<index>.tile   counts + smooth of one tile, shared by every job of
                                       that picture (PNG or msgpack, any colormap)
    tiles/<pixels hash>/<first>-<end>.pack   the tiles of one batch in one object (fractally/jobs/packs.py)

The job id is the spec's content hash, so an identical request finds its job.
Status is never stored: it is read off the keys above (docs/architecture.md principle 1).
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fractally.errors import KeyNotFound, NotFound
from fractally.picture.spec import RenderSpec, parse_spec
from fractally.store import ObjectStore
from fractally.picture.tiling import tile_count

JOB_ID = re.compile(r"[0-9a-f]{32}")
STATUSES = ("queued", "running", "assembling", "done", "failed")


def job_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/"


def manifest_key(job_id: str) -> str:
    return f"jobs/{job_id}/spec.json"


def result_key(job_id: str, fmt: str) -> str:
    return f"jobs/{job_id}/result.{fmt}"


def failed_key(job_id: str) -> str:
    return f"jobs/{job_id}/failed.json"


def claim_key(job_id: str) -> str:
    return f"jobs/{job_id}/assemble.claim"


def dispatch_key(job_id: str) -> str:
    return f"jobs/{job_id}/dispatch.lease"


def tiles_prefix(pixels_hash: str) -> str:
    return f"tiles/{pixels_hash}/"


def tile_key(pixels_hash: str, index: int) -> str:
    return f"tiles/{pixels_hash}/{index:07d}.tile"


def pack_key(pixels_hash: str, first: int, end: int) -> str:
    return f"tiles/{pixels_hash}/{first:07d}-{end:07d}.pack"


_TILE_NAME = re.compile(r"(\d{7})\.tile")
_PACK_NAME = re.compile(r"(\d{7})-(\d{7})\.pack")


def tiles_where(keys: list[str], prefix: str) -> dict[int, str]:
    """Tile index -> the key that holds it (a tile object or a pack), from a listing of ``prefix``."""
    found: dict[int, str] = {}
    for key in keys:
        name = key[len(prefix):]
        if m := _TILE_NAME.fullmatch(name):
            found[int(m.group(1))] = key
        elif m := _PACK_NAME.fullmatch(name):
            for index in range(int(m.group(1)), int(m.group(2))):
                found.setdefault(index, key)
    return found


@dataclass(frozen=True)
class Job:
    """A job as its manifest describes it."""

    id: str
    spec: RenderSpec
    tiles_total: int

    @property
    def pixels_hash(self) -> str:
        return self.spec.pixels_hash()

    @property
    def result_key(self) -> str:
        return result_key(self.id, self.spec.format)

    def tile_task(self, index: int) -> dict[str, Any]:
        """What render_tile needs for one tile: self-contained, JSON, the same on every invoker."""
        return {"job": self.id, "spec": self.spec.normalized(), "tile": index}

    def batch_task(self, first: int, end: int) -> dict[str, Any]:
        """What render_tile needs for tiles ``first`` to ``end - 1`` (``tasks.render_batch``)."""
        return {"job": self.id, "spec": self.spec.normalized(), "first": first, "count": end - first}

    def manifest(self) -> dict[str, Any]:
        return {"id": self.id, "spec": self.spec.normalized(), "tiles_total": self.tiles_total,
                "pixels_hash": self.pixels_hash}


def new_job(spec: RenderSpec) -> Job:
    return Job(spec.content_hash(), spec, tile_count(spec))


def check_job_id(job_id: str) -> str:
    """Ids are hashes: anything else cannot name a job (and never reaches the store)."""
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise NotFound("no render with this id; ids are 32 hexadecimal characters", "id")
    return job_id


def create(store: ObjectStore, spec: RenderSpec) -> tuple[Job, bool]:
    """Write the job's manifest unless it exists; True if this call created the job."""
    job = new_job(spec)
    created = store.put_if_absent(manifest_key(job.id), json.dumps(job.manifest()).encode(), "application/json")
    return job, created


def load(store: ObjectStore, job_id: str) -> Job:
    check_job_id(job_id)
    try:
        manifest = json.loads(store.get(manifest_key(job_id)))
    except KeyNotFound:
        raise NotFound(f"no render with id {job_id}", "id") from None
    spec = parse_spec(manifest["spec"])
    return Job(job_id, spec, int(manifest["tiles_total"]))


def tiles_located(store: ObjectStore, job: Job) -> dict[int, str]:
    """Every stored tile of the job's picture and the key that holds it: one listing (a page per 1,000
    objects; a batch of tiles is one object)."""
    prefix = tiles_prefix(job.pixels_hash)
    return tiles_where(store.list(prefix), prefix)


def tiles_present(store: ObjectStore, job: Job) -> set[int]:
    """Indices of the tiles already in the store."""
    return set(tiles_located(store, job))


def missing_tiles(store: ObjectStore, job: Job) -> list[int]:
    present = tiles_present(store, job)
    return [i for i in range(job.tiles_total) if i not in present]


def mark_failed(store: ObjectStore, job_id: str, message: str) -> None:
    """Record why the job failed; the message is shown to the user, so it must hold no internals."""
    body = {"error": {"code": "render_failed", "message": message, "field": None}, "at": time.time()}
    store.put(failed_key(job_id), json.dumps(body).encode(), "application/json")


def clear_failed(store: ObjectStore, job_id: str) -> None:
    store.delete(failed_key(job_id))
    store.delete(claim_key(job_id))


@dataclass(frozen=True)
class Status:
    job: Job
    status: str
    tiles_done: int
    error: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.job.id,
            "status": self.status,
            "progress": {"tiles_done": self.tiles_done, "tiles_total": self.job.tiles_total},
            "spec": self.job.spec.normalized(),
        }
        if self.error is not None:
            out["error"] = self.error
        return out


def status(store: ObjectStore, job_id: str) -> Status:
    """Where the job is, read off the store: result → done, failure record → failed, else tiles."""
    return status_of(store, load(store, job_id))


#: The reads of a status poll go out together (``status_of``): a few threads, shared by every poll.
_READS = ThreadPoolExecutor(8, thread_name_prefix="fractally-status")


def status_of(store: ObjectStore, job: Job, tiles_done: int | None = None) -> Status:
    """``status`` of a loaded job; ``tiles_done``, when the caller knows it (the invoker that runs
    the job counts its tiles as they land), saves listing the tiles. The result and the failure
    record are always read off the store.

    The result, the failure record and the tile listing are read at once, so a poll waits for one
    round trip to the store instead of three (a finished job's poll pays a listing it does not need)."""
    done_f = _READS.submit(store.exists, job.result_key)
    error_f = _READS.submit(_failure, store, job.id)
    count_f = _READS.submit(lambda: len(tiles_present(store, job))) if tiles_done is None else None
    if done_f.result():
        return Status(job, "done", job.tiles_total)
    done = count_f.result() if count_f is not None else tiles_done
    error = error_f.result()
    if error is not None:
        return Status(job, "failed", done, error)
    if done >= job.tiles_total:
        return Status(job, "assembling", done)
    return Status(job, "running" if done else "queued", done)


def _failure(store: ObjectStore, job_id: str) -> dict | None:
    try:
        return json.loads(store.get(failed_key(job_id)))["error"]
    except KeyNotFound:
        return None
