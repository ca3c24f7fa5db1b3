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
"""

from __future__ import annotations

import io
import re
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from fractally import jobs
from fractally.picture.codec import adler32_combine, msgpack_layout, png_head, png_tail, write_band_chunks
from fractally.picture.compose import CONTENT_TYPES, Band, _colour_and_deflate, _joined
from fractally.picture.spec import RenderSpec
from fractally.store import ObjectStore

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
    with a ``pool`` PNG bands are coloured and compressed in parallel."""
    end = first + len(bands)
    if spec.format == "msgpack":
        counts, smooth = [], []
        for c, s in _joined(bands):
            counts.append(np.ascontiguousarray(c, "<u4").tobytes())
            smooth.append(np.ascontiguousarray(s, "<f4").tobytes())
        return Piece(first, end, {"counts": b"".join(counts), "smooth": b"".join(smooth)})
    deflated = (pool.map(lambda b: _colour_and_deflate(spec, b), bands) if pool is not None
                else (_colour_and_deflate(spec, b) for b in bands))
    out, adler, raw_len = io.BytesIO(), 1, 0
    for r, rows in enumerate(deflated, start=first):
        write_band_chunks(out, rows, first=r == 0)
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


def join(store: ObjectStore, job: jobs.Job, pieces: list[Piece], sizes: dict[str, int]) -> bool:
    """Write the result from ``pieces`` (covering every band, in order: stored or encoded here) with
    put-if-absent; True if this call wrote it."""
    spec = job.spec
    parts: list[str | bytes]
    if spec.format == "msgpack":
        layout = msgpack_layout(spec.width, spec.height, spec.max_iter, spec.normalized())
        parts = [layout.head, *(p.parts["counts"] for p in pieces), layout.middle,
                 *(p.parts["smooth"] for p in pieces)]
    else:
        adler = 1
        for p in pieces:
            adler = adler32_combine(adler, p.adler, p.raw_len)
        parts = [png_head(spec.width, spec.height), *(p.parts["png"] for p in pieces), png_tail(adler)]
    return store.join(job.result_key, parts, sizes=sizes, content_type=CONTENT_TYPES[spec.format],
                      if_absent=True)


def remove(store: ObjectStore, sizes: dict[str, int]) -> None:
    """Delete the listed pieces once the result holds their bytes (they are only space now)."""
    store.delete_many(sizes)
