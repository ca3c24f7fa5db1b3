"""From bands of tiles to a finished image file: shared by the CLI, sync renders and assemble.

A band is one row of tiles, full image width. Memory is bounded by a band (plus
the encoder's small buffers), never by the image, so a gigapixel result is
written with the same few hundred MiB as a small one.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np

from fractally.codec import DeflatedRows, PngStreamWriter, deflate_filtered, filtered_rows, write_msgpack_stream
from fractally.colour import colour_into
from fractally.spec import RenderSpec
from fractally.tiling import Tile, band, grid, render_tile_arrays

Part = tuple[np.ndarray, np.ndarray]  # (counts uint32, smooth float32) of one tile
Band = list[Part]  # the tiles of one tile row, left to right

CONTENT_TYPES = {"png": "image/png", "msgpack": "application/msgpack"}


def _joined(bands: Iterable[Band]) -> Iterator[Part]:
    """Each band's tiles side by side as full-width rows (counts, smooth), joined into one pair of
    buffers reused from band to band (the consumer writes a band before it asks for the next): no
    fresh band-sized arrays to allocate and fault in each time."""
    counts = smooth = None
    for parts in bands:
        rows, width = parts[0][0].shape[0], sum(c.shape[1] for c, _ in parts)
        if counts is None or counts.shape[0] < rows or counts.shape[1] != width:
            counts, smooth = np.empty((rows, width), np.uint32), np.empty((rows, width), np.float32)
        c, s = counts[:rows], smooth[:rows]
        np.concatenate([p[0] for p in parts], axis=1, out=c)
        np.concatenate([p[1] for p in parts], axis=1, out=s)
        yield c, s


def render_bands(spec: RenderSpec, pool: Executor, on_tile: Callable[[Tile], None] | None = None,
                 lookahead: int = 2) -> Iterator[Band]:
    """Render every tile on ``pool`` and yield the bands top to bottom.

    Up to ``lookahead`` bands are in flight, so all workers stay busy while the
    caller encodes the band before.
    """
    rows, _ = grid(spec)

    def submit(r: int) -> list[Future]:
        def work(t: Tile) -> Part:
            result = render_tile_arrays(spec, t)
            if on_tile is not None:
                on_tile(t)
            return result
        return [pool.submit(work, t) for t in band(spec, r)]

    queue: deque[list[Future]] = deque(submit(r) for r in range(min(lookahead, rows)))
    for r in range(rows):
        if r + lookahead < rows:
            queue.append(submit(r + lookahead))
        yield [f.result() for f in queue.popleft()]


def _colour_and_deflate(spec: RenderSpec, parts: Band) -> DeflatedRows:
    """One band to compressed PNG rows; colours tile by tile, straight into the band's PNG rows."""
    rows = parts[0][0].shape[0]
    raw = filtered_rows(rows, sum(c.shape[1] for c, _ in parts))
    x = 1
    for counts, smooth in parts:
        colour_into(raw[:, x : x + counts.shape[1] * 3], counts, smooth, spec.max_iter, spec.colormap)
        x += counts.shape[1] * 3
    return deflate_filtered(raw)


def write_image(spec: RenderSpec, bands: Iterable[Band], out: BinaryIO, pool: Executor | None = None) -> None:
    """Encode ``bands`` as the spec's format (PNG coloured by its colormap, or API.md's msgpack).

    With a ``pool``, PNG bands are coloured and compressed in parallel (numpy and zlib
    release the GIL), at most one band per worker in flight plus the one being written.
    """
    if spec.format == "msgpack":
        write_msgpack_stream(out, spec.width, spec.height, spec.max_iter, _joined(bands), spec=spec.normalized())
        return
    writer = PngStreamWriter(out, spec.width, spec.height)
    if pool is None:
        for parts in bands:
            writer.write_deflated(_colour_and_deflate(spec, parts))
    else:
        in_flight: deque[Future] = deque()
        depth = max(1, getattr(pool, "_max_workers", 1))
        for parts in bands:
            in_flight.append(pool.submit(_colour_and_deflate, spec, parts))
            if len(in_flight) > depth:
                writer.write_deflated(in_flight.popleft().result())
        while in_flight:
            writer.write_deflated(in_flight.popleft().result())
    writer.close()


def write_image_file(spec: RenderSpec, bands: Iterable[Band], path: str | os.PathLike,
                     pool: Executor | None = None) -> Path:
    """Write atomically: the file appears under ``path`` only once it is complete."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as out:
            write_image(spec, bands, out, pool)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the image is for everyone who can read the folder
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
