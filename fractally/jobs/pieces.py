"""Band pieces: a result made in parallel, a run of bands at a time, then joined inside the store.

One assembler reading every tile through one process does not grow (a gigapixel is ~6 GB of raw
tiles). Instead, whoever holds a run of whole bands in memory -- ``render_tile`` when its batch
covers whole tile rows -- writes the bytes those bands occupy in the final file, and the final
assembly joins the pieces in order (``ObjectStore.join``: on S3 a multipart upload that copies big
pieces inside the store, on a local folder a concatenation). Bands no piece covers are encoded by
the final assembly from their tiles, as before.

The bytes of a band do not depend on who makes it: PNG frames every band in IDAT chunks of its own
(``codec.write_band_chunks``) and msgpack's arrays are plain rows, so a joined result is byte for
byte the one ``fractally render`` writes.

Keys, per job (a piece is coloured, so it belongs to the job, not to the picture's tiles)::

    jobs/<id>/pieces/<first:07d>-<end:07d>.png.<adler32 hex>.<raw bytes>   bands [first, end), PNG
    jobs/<id>/pieces/<first:07d>-<end:07d>.counts | .smooth                 the same, msgpack arrays

A PNG piece's name carries what the file's trailer needs from it (the Adler-32 of its raw rows and
their length), so one listing of the job's pieces is all the joiner reads before it joins.

**Merging.** S3 copies a piece inside the store only if it is at least 5 MiB (its part minimum,
``ObjectStore.join_part_minimum``); a row's piece is often far smaller (a gigapixel PNG's rows are
about 0.9 MB), and a join of small pieces reads every one of them through the joining process, which
is then the slowest step of a big job. So whoever stores a piece also checks the run of small pieces
around it, and once the run adds up to a part it is written again as one piece (``merge_near``):
the merges happen while the job still renders, on many pods, and the final join copies the merged
pieces where they are. A merged piece's bytes are its pieces' bytes in order, so the result does not
depend on which merges happened; racing merges of one run write the same object.
"""

from __future__ import annotations

import io
import re
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Iterable

import numpy as np

from fractally import jobs
from fractally.picture.codec import DeflatedRows, adler32_combine, msgpack_layout, png_head, png_tail, write_band_chunks
from fractally.picture.compose import CONTENT_TYPES, Band, _colour_and_deflate, _joined
from fractally.picture.spec import RenderSpec
from fractally.picture.tiling import grid
from fractally.store import ObjectStore
from fractally.store.base import JoinPart

_PNG = re.compile(r"(\d{7})-(\d{7})\.png\.([0-9a-f]{8})\.(\d+)")
_ARRAYS = re.compile(r"(\d{7})-(\d{7})\.(counts|smooth)")


def pieces_prefix(job_id: str) -> str:
    return f"{jobs.job_prefix(job_id)}pieces/"


@dataclass(frozen=True)
class Piece:
    """Bands [first, end) of a result, encoded: the parts to write in order (keys or bytes), per array."""

    first: int
    end: int
    parts: dict[str, str | bytes]  # "png" | "counts" | "smooth" -> key in the store, or the bytes
    adler: int = 1
    raw_len: int = 0


def encode(spec: RenderSpec, first: int, bands: list[Band], pool: Executor | None = None) -> Piece:
    """Bands ``first``, ``first + 1``, ... (their tiles' arrays) as they appear in the result's file;
    with a ``pool`` PNG bands are coloured and compressed in parallel.

    The piece of band 0 starts with what the file has before it (PNG: signature and IHDR; msgpack:
    the head before the counts and the middle before the smooth values), so that a join whose parts
    must be big (S3's) copies that piece in place like any other instead of reading it to put the
    head in front."""
    end = first + len(bands)
    if spec.format == "msgpack":
        counts, smooth = [], []
        if first == 0:
            layout = msgpack_layout(spec.width, spec.height, spec.max_iter, spec.normalized())
            counts.append(layout.head)
            smooth.append(layout.middle)
        for c, s in _joined(bands):
            counts.append(np.ascontiguousarray(c, "<u4").tobytes())
            smooth.append(np.ascontiguousarray(s, "<f4").tobytes())
        return Piece(first, end, {"counts": b"".join(counts), "smooth": b"".join(smooth)})
    deflated = (pool.map(lambda b: _colour_and_deflate(spec, b), bands) if pool is not None
                else (_colour_and_deflate(spec, b) for b in bands))
    return framed(spec, first, deflated)


def framed(spec: RenderSpec, first: int, deflated: Iterable[DeflatedRows]) -> Piece:
    """A PNG piece from bands already compressed (``encode``; ``fractally.jobs.rowparts``)."""
    out, adler, raw_len, end = io.BytesIO(), 1, 0, first
    if first == 0:
        out.write(png_head(spec.width, spec.height))
    for end, rows in enumerate(deflated, start=first + 1):
        write_band_chunks(out, rows, first=end == 1)
        adler, raw_len = adler32_combine(adler, rows.adler, rows.raw_len), raw_len + rows.raw_len
    return Piece(first, end, {"png": out.getvalue()}, adler, raw_len)


def _key(job_id: str, piece: Piece, kind: str) -> str:
    name = f"{piece.first:07d}-{piece.end:07d}"
    if kind == "png":
        return f"{pieces_prefix(job_id)}{name}.png.{piece.adler:08x}.{piece.raw_len}"
    return f"{pieces_prefix(job_id)}{name}.{kind}"


def store_piece(store: ObjectStore, job_id: str, piece: Piece) -> int:
    """Write the piece's objects; how many."""
    for kind, data in piece.parts.items():
        assert isinstance(data, bytes)
        store.put(_key(job_id, piece, kind), data)
    return len(piece.parts)


def stored(store: ObjectStore, job: jobs.Job) -> tuple[dict[int, list[Piece]], dict[str, int]]:
    """The job's stored pieces by first band, and their sizes: one listing."""
    prefix = pieces_prefix(job.id)
    sizes = store.list_sizes(prefix)
    found: dict[tuple[int, int], dict[str, str]] = {}
    meta: dict[tuple[int, int], tuple[int, int]] = {}
    for key in sizes:
        name = key[len(prefix):]
        if job.spec.format == "png" and (m := _PNG.fullmatch(name)):
            run = (int(m.group(1)), int(m.group(2)))
            found.setdefault(run, {})["png"] = key
            meta[run] = (int(m.group(3), 16), int(m.group(4)))
        elif job.spec.format == "msgpack" and (m := _ARRAYS.fullmatch(name)):
            found.setdefault((int(m.group(1)), int(m.group(2))), {})[m.group(3)] = key
    by_first: dict[int, list[Piece]] = {}
    wanted = {"png"} if job.spec.format == "png" else {"counts", "smooth"}
    for (first, end), parts in found.items():
        if set(parts) == wanted:
            adler, raw_len = meta.get((first, end), (1, 0))
            by_first.setdefault(first, []).append(Piece(first, end, dict(parts), adler, raw_len))
    for runs in by_first.values():
        runs.sort(key=lambda p: p.end, reverse=True)  # the longest run first
    return by_first, sizes


def cover(by_first: dict[int, list[Piece]], rows: int) -> tuple[list[Piece], list[int]]:
    """Stored pieces that tile bands 0..rows-1 without overlap, left to right, taking the longest run
    that starts where the last one ended; and the bands none covers (to be encoded from tiles)."""
    chosen, missing, r = [], [], 0
    while r < rows:
        runs = [p for p in by_first.get(r, ()) if p.end <= rows]
        if runs:
            chosen.append(runs[0])
            r = runs[0].end
        else:
            missing.append(r)
            r += 1
    return chosen, missing


def join(store: ObjectStore, job: jobs.Job, pieces: list[Piece | Future[Piece]], sizes: dict[str, int]) -> bool:
    """Write the result from ``pieces`` (covering every band, in order: stored, encoded here, or still
    being encoded, which the store's join waits for when it reaches them) with put-if-absent; True if
    this call wrote it."""
    spec = job.spec

    def part(p: Piece | Future[Piece], kind: str) -> JoinPart:
        return p.parts[kind] if isinstance(p, Piece) else lambda: p.result().parts[kind]

    def tail() -> bytes:
        adler = 1
        for p in pieces:
            done = p if isinstance(p, Piece) else p.result()
            adler = adler32_combine(adler, done.adler, done.raw_len)
        return png_tail(adler)

    parts: list[JoinPart]
    if spec.format == "msgpack":  # the first piece holds the head and the middle (``encode``)
        parts = [*(part(p, "counts") for p in pieces), *(part(p, "smooth") for p in pieces)]
    else:
        parts = [*(part(p, "png") for p in pieces), tail]
    return store.join(job.result_key, parts, sizes=sizes, content_type=CONTENT_TYPES[spec.format],
                      if_absent=True)


def size_of(piece: Piece, sizes: dict[str, int]) -> int:
    """The piece's bytes in the result (stored parts by their listed size)."""
    return sum(_sizes(piece, sizes))


def _sizes(piece: Piece, sizes: dict[str, int]) -> list[int]:
    return [sizes.get(v, 0) if isinstance(v, str) else len(v) for v in piece.parts.values()]


def small_run(by_first: dict[int, list[Piece]], sizes: dict[str, int], rows: int, band: int,
              minimum: int) -> list[Piece]:
    """The consecutive small pieces, as the join would take them (``cover``), that include ``band``:
    bounded by a missing band, a big piece or the image's edge. A piece is small if one of its objects
    (a msgpack piece has two, joined apart) is under ``minimum`` bytes."""
    run: list[Piece] = []
    r = 0
    while r < rows:
        found = [p for p in by_first.get(r, ()) if p.end <= rows]
        if found and min(_sizes(found[0], sizes)) < minimum:
            run.append(found[0])
            r = found[0].end
            continue
        if run and run[0].first <= band < run[-1].end:
            return run
        run = []
        r = found[0].end if found else r + 1
    return run if run and run[0].first <= band < run[-1].end else []


def _due(run: list[Piece], sizes: dict[str, int], band: int, minimum: int) -> list[Piece]:
    """The stretch of ``run`` holding ``band`` that is due for a merge: the run cut, from its start,
    into stretches that just reach ``minimum`` (so a merge reads a part's worth, not a whole run
    that racing writers left unmerged); none if ``band``'s stretch does not reach it."""
    stretch: list[Piece] = []
    totals = [0] * len(run[0].parts) if run else []
    for piece in run:
        stretch.append(piece)
        totals = [t + n for t, n in zip(totals, _sizes(piece, sizes))]
        if min(totals) >= minimum:
            if stretch[0].first <= band < stretch[-1].end:
                return stretch
            stretch, totals = [], [0] * len(totals)
    return []


def merge_near(store: ObjectStore, job: jobs.Job, band: int) -> Piece | None:
    """Once the small pieces around ``band`` (just stored by the caller) add up to a part the store
    joins in place, store them as one piece; that piece, or None if no merge was due.

    The last of a run's pieces to be stored sees the whole run (each caller lists after its own
    write), so every run that reaches the minimum gets merged, by one caller or, racing, by two.
    """
    minimum = store.join_part_minimum
    if not minimum:
        return None  # the store joins pieces of any size where they are: nothing to gain
    by_first, sizes = stored(store, job)
    run = _due(small_run(by_first, sizes, grid(job.spec)[0], band, minimum), sizes, band, minimum)
    if len(run) < 2:
        return None
    if store.exists(job.result_key):
        return None  # joined already: a piece now would only be litter
    keys = [key for p in run for key in p.parts.values()]
    with ThreadPoolExecutor(min(8, len(keys))) as pool:
        data = dict(zip(keys, pool.map(store.get, keys)))
    merged = concatenated([replace(p, parts={k: data[v] for k, v in p.parts.items()}) for p in run])
    store_piece(store, job.id, merged)
    return merged


def concatenated(run: list[Piece]) -> Piece:
    """Consecutive pieces (their bytes at hand) as one: each kind's bytes one after another."""
    adler, raw_len = 1, 0
    for p in run:
        adler, raw_len = adler32_combine(adler, p.adler, p.raw_len), raw_len + p.raw_len
    return Piece(run[0].first, run[-1].end, {k: b"".join(p.parts[k] for p in run) for k in run[0].parts},
                 adler, raw_len)


def remove_all(store: ObjectStore, job_id: str) -> None:
    """Delete the job's pieces once the result holds their bytes (listed now: late merges too)."""
    store.delete_many(store.list(pieces_prefix(job_id)))
