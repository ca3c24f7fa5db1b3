"""From tiles to a finished image: shared by the CLI, sync renders and assemble.

A band is one row of tiles, full image width. Memory is bounded by a few bands (plus
the encoder's small buffers), never by the image, so a gigapixel result is
written with the same few hundred MiB as a small one.

Two ways in: ``render_image`` renders a spec straight into its encoding, each tile placed
by the thread that rendered it (the CLI and sync renders); ``write_image`` encodes bands
of tiles that already exist (assemble, which reads them from the store).
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections import deque
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator

import numpy as np

from fractally.picture.codec import (DeflatedRows, PngStreamWriter, deflate_filtered, filtered_rows, msgpack_layout,
                             write_msgpack_stream)
from fractally.picture.colour import colour_into
from fractally.store.fileio import pwrite_all, write_to
from fractally.store.orphans import remove_orphans, temp_prefix
from fractally.picture.spec import RenderSpec
from fractally.picture.tiling import Tile, band, grid, render_tile_arrays

Part = tuple[np.ndarray, np.ndarray]  # (counts uint32, smooth float32) of one tile
Band = list[Part]  # the tiles of one tile row, left to right

CONTENT_TYPES = {"png": "image/png", "msgpack": "application/msgpack"}

#: How the names of a file being written in the user's folder start (``_atomic_file``, ``fractally.store.orphans``).
PARTIAL_TEMP = ".partial-"


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


def _colour_tile(spec: RenderSpec, raw: np.ndarray, x0: int, counts: np.ndarray, smooth: np.ndarray) -> None:
    """Colour one tile into its columns (from pixel ``x0``) of a band's ``filtered_rows``."""
    colour_into(raw[:, 1 + 3 * x0 : 1 + 3 * (x0 + counts.shape[1])], counts, smooth, spec.max_iter, spec.colormap)


def coloured_rows(spec: RenderSpec, parts: Band) -> np.ndarray:
    """Tiles side by side (a band, or part of one) as PNG rows (``filtered_rows``), coloured tile by tile
    straight into them."""
    raw = filtered_rows(parts[0][0].shape[0], sum(c.shape[1] for c, _ in parts))
    x0 = 0
    for counts, smooth in parts:
        _colour_tile(spec, raw, x0, counts, smooth)
        x0 += counts.shape[1]
    return raw


def _colour_and_deflate(spec: RenderSpec, parts: Band) -> DeflatedRows:
    """One band to compressed PNG rows."""
    return deflate_filtered(coloured_rows(spec, parts))


def write_image(spec: RenderSpec, bands: Iterable[Band], out: BinaryIO, pool: Executor | None = None) -> None:
    """Encode ``bands`` as the spec's format (PNG coloured by its colormap, or docs/api.md's msgpack).

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


@contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file that appears under ``path`` only once the block completes (removed if it fails).

    A render killed outright (SIGKILL, the OOM killer) cannot remove its file: the next render into
    the same folder does, once it sees the owner is gone (only files named as ours, never the user's).
    """
    folder = path.parent or Path(".")
    remove_orphans(folder, PARTIAL_TEMP)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(PARTIAL_TEMP), dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the image is for everyone who can read the folder
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_image_file(spec: RenderSpec, bands: Iterable[Band], path: str | os.PathLike,
                     pool: Executor | None = None) -> Path:
    """``write_image`` atomically: the file appears under ``path`` only once it is complete."""
    path = Path(path)
    with _atomic_file(path) as out:
        write_image(spec, bands, out, pool)
    return path


def render_image_file(spec: RenderSpec, path: str | os.PathLike, pool: Executor,
                      on_tile: Callable[[Tile], None] | None = None) -> Path:
    """``render_image`` atomically: the file appears under ``path`` only once it is complete."""
    path = Path(path)
    with _atomic_file(path) as out:
        render_image(spec, out, pool, on_tile)
    return path


# --- rendering straight into the encoding -----------------------------------------------------------

class _PositionalWriter:
    """Writes at offsets (from ``out``'s position when made), from any thread, one at a time:
    ``os.pwrite`` on a real file, else seek and write.

    One at a time because the kernel takes a file's writes one at a time anyway (its inode lock), and
    a second writer waiting there spun on a core (``rwsem_spin_on_owner``, 7 % of a msgpack render's
    CPU) where waiting for this lock sleeps.
    """

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.base, self._lock = out, out.tell(), threading.Lock()
        try:
            out.flush()
            self.fd: int | None = out.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):  # BytesIO and friends
            self.fd = None

    def write(self, data: Any, offset: int) -> None:
        with self._lock:
            if self.fd is None:
                self.out.seek(self.base + offset)
                write_to(self.out, data)
            else:
                pwrite_all(self.fd, data, self.base + offset)


class _BandInFlight:
    """One band: its tiles to place, then its finishing step; ``done`` gets the step's result."""

    def __init__(self, tiles: int, state: Any) -> None:
        self.state = state
        self.done: Future = Future()
        self._tiles_left = tiles
        self._lock = threading.Lock()

    def tile_placed(self) -> bool:
        """True for the band's last tile: its thread finishes the band."""
        with self._lock:
            self._tiles_left -= 1
            return self._tiles_left == 0

    def fail(self, err: BaseException) -> None:
        with self._lock:
            if not self.done.done():
                self.done.set_exception(err)


def _render_placed(spec: RenderSpec, pool: Executor, start: Callable[[int, list[Tile]], Any],
                   place: Callable[[Any, Tile, np.ndarray, np.ndarray], None], finish: Callable[[Any], Any],
                   on_tile: Callable[[Tile], None] | None, lookahead: int) -> Iterator[Any]:
    """Render every tile on ``pool`` and hand it to ``place`` on the thread that rendered it (then it is
    freed); a band's last tile runs ``finish(state)`` on its own thread. Yields each band's ``finish``
    result, top to bottom, with up to ``lookahead`` more bands in flight."""
    rows, _ = grid(spec)

    def render(work: _BandInFlight, t: Tile) -> None:
        try:
            counts, smooth = render_tile_arrays(spec, t)
            place(work.state, t, counts, smooth)
            del counts, smooth
            if on_tile is not None:
                on_tile(t)
            if work.tile_placed():
                work.done.set_result(finish(work.state))
        except BaseException as err:  # noqa: BLE001 -- handed to the caller through work.done
            work.fail(err)

    def submit(r: int) -> _BandInFlight:
        tiles = band(spec, r)
        work = _BandInFlight(len(tiles), start(r, tiles))
        for t in tiles:
            pool.submit(render, work, t)
        return work

    queue: deque[_BandInFlight] = deque(submit(r) for r in range(min(lookahead, rows)))
    for r in range(rows):
        if r + lookahead < rows:
            queue.append(submit(r + lookahead))
        yield queue.popleft().done.result()


def render_image(spec: RenderSpec, out: BinaryIO, pool: Executor,
                 on_tile: Callable[[Tile], None] | None = None, lookahead: int = 2) -> None:
    """Render ``spec`` into ``out`` (seekable) in its format: the same image ``write_image`` makes of
    ``render_bands``, with less memory and less copying.

    Each tile goes from the kernel to its place while it is still in the core's cache -- coloured
    into its band's PNG rows, or copied into its band's msgpack rows -- and is freed at once (a
    third of the memory in flight: fewer pages to fault in, docs/benchmarks.md "Kernel"). A band's
    last tile finishes the band: deflate (one piece a band, so the PNG is byte for byte
    ``write_image``'s), or the band's writes at their offsets (a file takes one write at a time).
    The caller's thread only writes finished PNG bands, in order.
    """
    rows_of = lambda tiles: tiles[0].height  # noqa: E731 -- the band's rows: its tiles' height
    if spec.format == "msgpack":
        layout = msgpack_layout(spec.width, spec.height, spec.max_iter, spec.normalized())
        writer = _PositionalWriter(out)
        writer.write(layout.head, 0)
        writer.write(layout.middle, layout.smooth_at - len(layout.middle))
        row_bytes = spec.width * 4

        def start(r: int, tiles: list[Tile]) -> tuple[int, np.ndarray, np.ndarray]:
            shape = (rows_of(tiles), spec.width)
            return tiles[0].y0, np.empty(shape, np.uint32), np.empty(shape, np.float32)

        def place(state: tuple, t: Tile, counts: np.ndarray, smooth: np.ndarray) -> None:
            _, band_counts, band_smooth = state
            band_counts[:, t.x0 : t.x0 + t.width] = counts
            band_smooth[:, t.x0 : t.x0 + t.width] = smooth

        def finish(state: tuple) -> None:  # the writes go one at a time (_PositionalWriter)
            y0, band_counts, band_smooth = state
            writer.write(band_counts, layout.counts_at + y0 * row_bytes)
            writer.write(band_smooth, layout.smooth_at + y0 * row_bytes)

        for _ in _render_placed(spec, pool, start, place, finish, on_tile, lookahead):
            pass
        out.seek(writer.base + layout.size)
        return

    png = PngStreamWriter(out, spec.width, spec.height)

    def start_png(r: int, tiles: list[Tile]) -> np.ndarray:
        return filtered_rows(rows_of(tiles), spec.width)

    def place_png(raw: np.ndarray, t: Tile, counts: np.ndarray, smooth: np.ndarray) -> None:
        _colour_tile(spec, raw, t.x0, counts, smooth)

    # deflate_filtered finishes a band: one piece a band, as write_image makes, so the same bytes
    for piece in _render_placed(spec, pool, start_png, place_png, deflate_filtered, on_tile, lookahead):
        png.write_deflated(piece)
    png.close()
