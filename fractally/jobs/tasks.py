"""The work the functions do, as plain Python over the store: one tile, one assembly.

``functions/render_tile`` and ``functions/assemble`` are HTTP adapters over these;
the in-process invoker and the queue worker call them directly. Both are
idempotent: a tile already stored is not rendered again, and a result is
written with put-if-absent, so repeats and races leave one result.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from fractally import jobs
from fractally.jobs import lease, packs, pieces, rowparts
from fractally.store import orphans
from fractally.picture.codec import encode_tile
from fractally.picture.compose import CONTENT_TYPES, Band, Part, write_image
from fractally.errors import BadRequest, SpecError
from fractally.picture.spec import RenderSpec, parse_spec
from fractally.store import ObjectStore
from fractally.picture.tiling import band, grid, render_tile_arrays, tile, tile_count

log = logging.getLogger("fractally.jobs.tasks")

#: An assembly claim not renewed for this long is taken to belong to a dead assembler (one on this
#: host is seen to be dead at once: ``orphans.owner_is_dead``).
CLAIM_TIMEOUT = 60.0
#: How often a live assembler renews its claim: a few renewals may fail or come late (a store away
#: for a moment, a busy machine) before another assembler would take the job over.
CLAIM_RENEWAL = lease.renewal_interval(CLAIM_TIMEOUT)

#: How the names of assemble's result files start while they are written (``fractally.store.orphans``).
RESULT_TEMP = "fractally-result-"


def parse_tile_task(task: Any) -> tuple[str, Any, int]:
    """Validate a tile task (it may come from the network): (job id, spec, tile index)."""
    job_id, spec = _task_job(task)
    index = task.get("tile")
    if isinstance(index, bool) or not isinstance(index, int):
        raise BadRequest("tile must be a whole number", "tile")
    return job_id, spec, index


def _task_job(task: Any) -> tuple[str, RenderSpec]:
    if not isinstance(task, dict):
        raise BadRequest("a tile task is a JSON object with job, spec and tile (or first and count)")
    job_id = jobs.check_job_id(task.get("job"))
    spec = parse_spec(task.get("spec"))
    if spec.content_hash() != job_id:
        raise SpecError("the task's spec does not belong to its job id", "spec")
    return job_id, spec


def parse_batch_task(task: Any) -> tuple[str, RenderSpec, int, int]:
    """Validate a batch task ``{"job", "spec", "first", "count"}``: (job id, spec, first, end)."""
    job_id, spec = _task_job(task)
    first, count = task.get("first"), task.get("count")
    for name, value in (("first", first), ("count", count)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRequest(f"{name} must be a whole number", name)
    total = tile_count(spec)
    if not (0 <= first and 1 <= count and first + count <= total):
        raise BadRequest(f"tiles {first}..{first + count - 1} are not all among the job's {total} tiles", "count")
    return job_id, spec, first, first + count


def render(task: Any, store: ObjectStore) -> dict[str, Any]:
    """What render_tile does with a task: a batch (``first``, ``count``) or a single ``tile``."""
    if isinstance(task, dict) and "first" in task:
        return render_batch(task, store)
    return render_tile(task, store)


def render_batch(task: dict, store: ObjectStore) -> dict[str, Any]:
    """Render a run of tiles and store them as one pack; the whole tile rows among them are also
    coloured and encoded into the result's piece for those bands (``fractally.jobs.pieces``), and the
    rows they cover in part into row parts (``fractally.jobs.rowparts``), so the final assembly only
    joins. No reads; the pack is written while the rest is encoded.

    Repeating a batch writes the same objects again (same keys, same bytes): harmless.
    """
    started = time.perf_counter()
    job_id, spec, first, end = parse_batch_task(task)
    _, cols = grid(spec)
    tiles, encoded = [], []
    for index in range(first, end):
        counts, smooth = render_tile_arrays(spec, tile(spec, index), store)
        encoded.append(encode_tile(counts, smooth, spec.max_iter))
        tiles.append((counts, smooth))
    t1 = time.perf_counter()
    with ThreadPoolExecutor(1) as writer:
        pack = writer.submit(store.put, jobs.pack_key(spec.pixels_hash(), first, end), packs.encode_pack(first, encoded))
        written = rowparts.store_parts(store, job_id, spec, first, tiles)
        band_first, band_end = -(-first // cols), end // cols  # the whole bands in [first, end)
        if band_end > band_first:
            bands = [tiles[r * cols - first:(r + 1) * cols - first] for r in range(band_first, band_end)]
            written += pieces.store_piece(store, job_id, pieces.encode(spec, band_first, bands))
            merged = pieces.merge_near(store, jobs.new_job(spec), band_first)
            written += len(merged.parts) if merged else 0
        pack.result()
    return {"job": job_id, "first": first, "count": end - first, "bands": max(0, band_end - band_first),
            "pieces": written, "seconds": {"render": t1 - started, "encode_store": time.perf_counter() - t1,
                                           "total": time.perf_counter() - started}}


def render_tile(task: dict, store: ObjectStore) -> dict[str, Any]:
    """Render one tile into the store unless it is already there."""
    rendered = compute_tile(task, store)
    return rendered if isinstance(rendered, dict) else store_tile(rendered, store)


@dataclass(frozen=True)
class RenderedTile:
    """A tile computed and encoded but not yet stored: ``render_tile`` split in two, so the
    in-process invoker can write one tile on an I/O thread while its core computes the next."""

    job_id: str
    index: int
    key: str
    counts: np.ndarray
    smooth: np.ndarray
    data: bytes
    started: float
    render_seconds: float
    encode_seconds: float


def compute_tile(task: dict, store: ObjectStore, spec: RenderSpec | None = None) -> dict[str, Any] | RenderedTile:
    """``render_tile``'s first half: the answer if the tile is already stored, else the tile to store.

    ``spec``: the task's spec, already parsed by a caller that built the task itself (the
    in-process invoker), which saves validating and hashing it again for every tile.
    """
    started = time.perf_counter()
    if spec is None:
        job_id, spec, index = parse_tile_task(task)
    else:
        job_id, index = task["job"], task["tile"]
    try:
        t = tile(spec, index)
    except IndexError as err:
        raise BadRequest(str(err), "tile") from None
    key = jobs.tile_key(spec.pixels_hash(), index)
    if store.exists(key):
        return {"job": job_id, "tile": index, "key": key, "cached": True,
                "seconds": {"total": time.perf_counter() - started}}
    t0 = time.perf_counter()
    counts, smooth = render_tile_arrays(spec, t, store)
    t1 = time.perf_counter()
    data = encode_tile(counts, smooth, spec.max_iter)
    return RenderedTile(job_id, index, key, counts, smooth, data, started, t1 - t0, time.perf_counter() - t1)


def store_tile(rendered: RenderedTile, store: ObjectStore) -> dict[str, Any]:
    """``render_tile``'s second half: write the tile; answers as ``render_tile`` does."""
    t0 = time.perf_counter()
    store.put(rendered.key, rendered.data)
    t1 = time.perf_counter()
    return {"job": rendered.job_id, "tile": rendered.index, "key": rendered.key, "cached": False,
            "seconds": {"render": rendered.render_seconds, "encode_store": rendered.encode_seconds + t1 - t0,
                        "total": t1 - rendered.started}}


#: ``assemble``'s ``ready``: blocks until tile ``index`` is stored; may hand over its arrays.
TileReady = Callable[[int], "Part | None"]


def _bands(store: ObjectStore, job: jobs.Job, ready: TileReady | None = None,
           reader: packs.TileReader | None = None, rows: Iterable[int] | None = None) -> Iterator[Band]:
    """Read the job's tiles one band at a time (memory: one band), from packs or tile objects, the
    band's objects all at once."""
    reader = reader or packs.TileReader(store, job)
    for r in rows if rows is not None else range(grid(job.spec)[0]):
        parts = []
        if ready is None:
            reader.prefetch(t.index for t in band(job.spec, r))
        for t in band(job.spec, r):
            part = ready(t.index) if ready is not None else None
            parts.append(part if part is not None else reader.read(t.index))
        yield parts


def assemble_bands(job_id: str, bands: Any, store: ObjectStore) -> dict[str, Any]:
    """Encode tile rows ``[first, end)`` of the job's result into their piece (``fractally.jobs.pieces``),
    from their stored tiles: how rows that were rendered in parts, by several calls, are encoded in
    parallel instead of all by the final assembly. Repeats write the same piece again."""
    started = time.perf_counter()
    job = jobs.load(store, job_id)
    rows, _ = grid(job.spec)
    if store.exists(job.result_key):  # late (the queue's final assembly ran first): a piece now is litter
        return {"job": job_id, "bands": bands, "status": "done", "seconds": time.perf_counter() - started}
    if (not isinstance(bands, list) or len(bands) != 2 or any(isinstance(b, bool) or not isinstance(b, int) for b in bands)
            or not 0 <= bands[0] < bands[1] <= rows):
        raise BadRequest(f"bands must be [first, end] with 0 <= first < end <= {rows}", "bands")
    first, end = bands
    reader = packs.TileReader(store, job)
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        piece = pieces.concatenated([_band_piece(store, job, r, _row_parts(store, job, r), reader, pool)
                                     for r in range(first, end)])
    pieces.store_piece(store, job_id, piece)
    merged = pieces.merge_near(store, job, first)
    return {"job": job_id, "bands": [first, end], "status": "done", "merged": merged is not None,
            "seconds": time.perf_counter() - started}


def _row_parts(store: ObjectStore, job: jobs.Job, band: int) -> list[tuple[int, str]] | None:
    """The row parts that cover ``band`` (``rowparts.covering``); None for msgpack or if they do not."""
    return rowparts.covering(store, job, band) if job.spec.format == "png" else None


def _band_piece(store: ObjectStore, job: jobs.Job, band: int, parts: list[tuple[int, str]] | None,
                reader: packs.TileReader, pool: Executor) -> pieces.Piece:
    """The piece of one band: from its row ``parts`` if it has them, else from its tiles (coloured and
    compressed on ``pool``)."""
    if parts:
        return pieces.framed(job.spec, band, [rowparts.deflated(store, job, band, parts)])
    return pieces.encode(job.spec, band, [next(_bands(store, job, reader=reader, rows=[band]))], pool)


def _claim(store: ObjectStore, job_id: str, holder: str) -> bool:
    """Take the job's assembly unless a live assembler holds it (a ``fractally.jobs.lease``).

    A claim names its holder as its temporary files do (``orphans.owner``). An assembler killed
    mid-write (OOM, gunicorn's timeout, SIGKILL) leaves its claim behind; the worker its server starts
    in its place is on the same host and sees at once that the holder is gone, also when it got the
    dead one's pid (``orphans.owner_is_dead``). A holder on another host is judged by the time since
    it last renewed its claim (CLAIM_TIMEOUT)."""
    return lease.take(store, jobs.claim_key(job_id), holder, CLAIM_TIMEOUT)


def assemble(job_id: str, store: ObjectStore, *, force: bool = False,
             ready: TileReady | None = None) -> dict[str, Any]:
    """Compose the job's tiles into its result, once.

    Returns ``{"status": "done" | "busy" | "incomplete", ...}``. ``force`` ignores a
    live claim (two forced assembles still give one result: put-if-absent).

    With ``ready`` the assembly is pipelined (the in-process invoker starts it together with
    the tiles): every tile goes through ``ready(index)`` before it is read, which blocks until
    the tile is stored and may hand over its arrays (then the store is not read); it raises if
    the tile will not come, which aborts the assembly (no result; the claim is released). So
    the first bands are coloured and compressed while the last ones still render.
    """
    started = time.perf_counter()
    job = jobs.load(store, job_id)
    with ThreadPoolExecutor(1) as asking:  # the plan's listings while the result is looked for
        done = asking.submit(store.exists, job.result_key)
        plan = _plan(store, job) if ready is None else None
        if done.result():
            return {"job": job_id, "status": "done", "key": job.result_key, "written": False}
    located = None
    if ready is None:
        if plan is None or None in plan.missing.values():  # bands made from tiles: are they all stored?
            located = jobs.tiles_located(store, job)
            missing = job.tiles_total - sum(1 for i in located if i < job.tiles_total)
            if missing:
                return {"job": job_id, "status": "incomplete", "missing": missing}
    holder = lease.new_holder()
    if not force and not _claim(store, job_id, holder):
        return {"job": job_id, "status": "busy"}
    # Renewed every CLAIM_RENEWAL seconds, so a claim whose holder died on another host (a pod gone
    # with its node) blocks the job for CLAIM_TIMEOUT only, while a long assembly keeps its claim
    # however long it takes.
    renewal = None
    if not force:
        renewal = lease.Renewal(store, CLAIM_RENEWAL, name="claim-renewal")
        renewal.add(jobs.claim_key(job_id), holder)
    try:
        # An assembler killed mid-write left its file in the scratch folder: gone with its claim.
        orphans.remove_orphans(getattr(store, "scratch_dir", None) or tempfile.gettempdir(), RESULT_TEMP)
        reader = packs.TileReader(store, job, located)
        if plan is not None:
            written, size, joined = _join_pieces(store, job, plan, reader)
        else:
            written, size = _write_result(store, job, _bands(store, job, ready, reader))
            joined = 0
        result_after = time.perf_counter() - started
        if ready is None:  # only space now that the result is written
            pieces.remove_all(store, job_id)
            rowparts.remove_all(store, job_id)
    finally:
        if renewal is not None:
            renewal.stop()  # before the release: no renewal brings the claim back
            lease.release(store, jobs.claim_key(job_id), holder)  # also on failure: a retry can assemble at once
        else:
            store.delete(jobs.claim_key(job_id))  # forced: the claim of the assembler this one replaces
    return {"job": job_id, "status": "done", "key": job.result_key, "written": written, "bytes": size,
            "pieces": joined, "seconds": time.perf_counter() - started, "result_after": result_after}


def _write_result(store: ObjectStore, job: jobs.Job, bands: Iterable[Band]) -> tuple[bool, int]:
    """Encode ``bands`` into the result through one file (put-if-absent): (written, bytes)."""
    # In the store's scratch folder, if it has one, put_file moves the result instead of copying it.
    scratch = getattr(store, "scratch_dir", None) or tempfile.gettempdir()
    fd, tmp = tempfile.mkstemp(prefix=orphans.temp_prefix(RESULT_TEMP), dir=scratch)
    try:
        with os.fdopen(fd, "wb") as out, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            write_image(job.spec, bands, out, pool)
        size = os.path.getsize(tmp)
        return store.put_file(job.result_key, tmp, CONTENT_TYPES[job.spec.format], if_absent=True), size
    finally:
        Path(tmp).unlink(missing_ok=True)


@dataclass(frozen=True)
class _Plan:
    """How a result is made from what is stored: the pieces that cover most bands, and each band they
    leave out with its row parts (None: it is made from its tiles)."""

    chosen: list[pieces.Piece]
    sizes: dict[str, int]
    missing: dict[int, list[tuple[int, str]] | None]


def _plan(store: ObjectStore, job: jobs.Job) -> _Plan | None:
    """The plan from one listing of the pieces (and one of each uncovered band's row parts); None if no
    piece is stored (then one writer streams the whole result from the tiles: nothing to join). When no
    band needs its tiles the job is complete without listing them (2,048 packs for a gigapixel)."""
    by_first, sizes = pieces.stored(store, job)
    if not by_first:
        return None
    chosen, missing = pieces.cover(by_first, grid(job.spec)[0])
    return _Plan(chosen, sizes, {r: _row_parts(store, job, r) for r in missing})


def _join_pieces(store: ObjectStore, job: jobs.Job, plan: _Plan, reader: packs.TileReader) -> tuple[bool, int, int]:
    """The result joined from the plan's pieces, the bands they leave out made here (one after another:
    the reader goes in band order) while the store copies the pieces before them: (written, bytes,
    pieces joined)."""
    with (ThreadPoolExecutor(os.cpu_count() or 1) as pool,  # colours and compresses bands made from tiles
          ThreadPoolExecutor(1, thread_name_prefix="assemble-band") as making):
        made = {r: making.submit(_band_piece, store, job, r, parts, reader, pool) for r, parts in plan.missing.items()}
        ordered = _in_band_order(plan.chosen, made)
        written = pieces.join(store, job, ordered, plan.sizes)
        size = sum(pieces.size_of(p if isinstance(p, pieces.Piece) else p.result(), plan.sizes) for p in ordered)
    return written, size, len(plan.chosen)


def _in_band_order(chosen: list[pieces.Piece], made: dict[int, Future[pieces.Piece]]
                   ) -> list[pieces.Piece | Future[pieces.Piece]]:
    """Stored pieces and the bands being made, by first band."""
    by_first: dict[int, pieces.Piece | Future[pieces.Piece]] = {p.first: p for p in chosen}
    by_first.update(made)
    return [by_first[first] for first in sorted(by_first)]
