"""Parts of a tile row, coloured where they were rendered, so that the row's band is made from a few
small objects instead of every raw tile.

When a job has more batches than tile rows, a row is rendered in parts by several calls, and its band
(``fractally.jobs.pieces``) is encoded once they are all stored. Made from the tiles, that reads the
row's packs: 5 bytes a pixel, 42 MB for a row of a 32768-wide image, which is most of the time of the
band call that ends the job. So a batch that covers part of a row (PNG results only) also stores that
part as PNG pixels, compressed lightly (ISA-L level 1: 82 KB for 8 tiles of 256², under a millisecond),
and the band is made by placing the parts side by side and compressing the rows as any band is::

    jobs/<id>/rowparts/<row:07d>/<first column:07d>-<end column:07d>.rgb   zlib of the part's RGB rows

Colouring is per pixel, so the band's bytes are the ones its tiles would give. A row whose parts do not
cover it (tiles cached by an earlier job, a part lost) is made from its tiles as before. The parts are
deleted with the job's pieces once the result is written.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from isal import isal_zlib

from fractally import jobs
from fractally.picture.codec import DeflatedRows, deflate_filtered, filtered_rows
from fractally.picture.compose import Part, coloured_rows
from fractally.picture.spec import RenderSpec
from fractally.picture.tiling import grid, tile
from fractally.store import ObjectStore

_NAME = re.compile(r"(\d{7})-(\d{7})\.rgb")
#: ISA-L's level 1: within 3 % of level 2's size on our pictures, and the parts are read once.
_LEVEL = 1
READS_IN_FLIGHT = 16


def rowparts_prefix(job_id: str, row: int | None = None) -> str:
    base = f"{jobs.job_prefix(job_id)}rowparts/"
    return base if row is None else f"{base}{row:07d}/"


def partial_rows(spec: RenderSpec, first: int, end: int) -> list[tuple[int, int, int]]:
    """(row, first column, end column) of each tile row that tiles [first, end) cover only in part."""
    cols = grid(spec)[1]
    spans = []
    for row in range(first // cols, (end - 1) // cols + 1):
        c0, c1 = max(first, row * cols) - row * cols, min(end, (row + 1) * cols) - row * cols
        if (c0, c1) != (0, cols):
            spans.append((row, c0, c1))
    return spans


def store_parts(store: ObjectStore, job_id: str, spec: RenderSpec, first: int, tiles: list[Part]) -> int:
    """Store the coloured parts of the rows that tiles ``first``, ``first + 1``, ... cover in part
    (their arrays in ``tiles``); how many objects. PNG results only: a msgpack band is its arrays."""
    if spec.format != "png":
        return 0
    cols = grid(spec)[1]
    spans = partial_rows(spec, first, first + len(tiles))
    for row, c0, c1 in spans:
        raw = coloured_rows(spec, tiles[row * cols + c0 - first:row * cols + c1 - first])
        store.put(f"{rowparts_prefix(job_id, row)}{c0:07d}-{c1:07d}.rgb", isal_zlib.compress(raw[:, 1:].tobytes(), _LEVEL))
    return len(spans)


def covering(store: ObjectStore, job: jobs.Job, row: int) -> list[tuple[int, str]] | None:
    """The stored parts that cover the tile row side by side, as (first column, key), from one listing;
    None if they do not cover it (then it is made from its tiles)."""
    cols = grid(job.spec)[1]
    prefix = rowparts_prefix(job.id, row)
    spans: dict[int, tuple[int, str]] = {}
    for key in store.list(prefix):
        if m := _NAME.fullmatch(key[len(prefix):]):
            spans[int(m.group(1))] = (int(m.group(2)), key)
    chain, c = [], 0
    while c < cols:
        if c not in spans or spans[c][0] <= c:
            return None
        chain.append((c, spans[c][1]))
        c = spans[c][0]
    return chain if c == cols else None


def deflated(store: ObjectStore, job: jobs.Job, row: int, chain: list[tuple[int, str]]) -> DeflatedRows:
    """The tile row's PNG rows, compressed as a band, from the parts ``covering`` found: read at once."""
    spec = job.spec
    with ThreadPoolExecutor(min(READS_IN_FLIGHT, len(chain))) as pool:
        data = list(pool.map(store.get, [key for _, key in chain]))
    height = tile(spec, row * grid(spec)[1]).height
    raw = filtered_rows(height, spec.width)
    for (c0, _), part in zip(chain, data):
        x0 = c0 * spec.tile_size
        pixels = np.frombuffer(isal_zlib.decompress(part), np.uint8).reshape(height, -1)
        raw[:, 1 + 3 * x0:1 + 3 * x0 + pixels.shape[1]] = pixels
    return deflate_filtered(raw)


def remove_all(store: ObjectStore, job_id: str) -> None:
    """Delete the job's row parts (once its result is written, they are only space)."""
    store.delete_many(store.list(rowparts_prefix(job_id)))
