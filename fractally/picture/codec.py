"""Result and tile encodings: msgpack (raw counts and smooth values) and PNG.

msgpack (docs/api.md "The msgpack result"): one map, keys in this order::

    version: 1, width, height, max_iter, dtype: "uint32", smooth_dtype: "float32",
    spec: {...} (only when given), counts: bin, smooth: bin

``counts`` is ``width * height`` little-endian uint32, row-major; ``smooth``
the same for float32. The big arrays come last so a reader can see the
metadata first and a writer can stream them. Tiles in the store use the same
format (a tile is just a small result), so there is one decoder to trust, with
one difference: a tile's counts are the narrowest unsigned type that holds
``max_iter`` (``dtype`` "uint8", "uint16" or "uint32"), so a tile of a job with
max_iter < 65536 is 6 bytes a pixel instead of 8: a quarter less to write and
read. Tiles are internal to the store; results are always uint32.

msgpack's ``bin`` length is a uint32, so one array holds at most 2**32 - 1
bytes: width * height <= 1_073_741_823 pixels (32768 x 32767 fits,
32768 x 32768 does not). Encoders raise ValueError beyond that.

PNG: one encoder, our own small writer (``PngStreamWriter``) over ISA-L's deflate
(the ``isal`` package), fed band by band, so assemble can stream a 32768 x 32768
picture with memory bounded by a few bands; bands are compressed independently
(``deflate_rows``, in parallel threads) and joined into one zlib stream, as pigz
does. Measured on a 4096 x 1024 band of the default julia view (bench in
docs/benchmarks.md, "Stack overhead"): ISA-L level 2 deflates 470 MB/s of rows
into 4.5 MB, stdlib zlib level 3 83 MB/s into 3.6 MB. So the PNGs are about a
quarter larger and five to six times cheaper to make: zlib took more CPU than the
escape-time kernel on light views. Filter type None throughout: colours come
from a lookup table, so whole pixels repeat exactly and deflate matches them
better unfiltered than after Sub/Up/Paeth (those were 15-40% larger here).
Pillow decodes (``decode_png``) and, in the tests, checks what we write.
"""

from __future__ import annotations

import functools
import io
import shutil
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

import msgpack
import numpy as np
from isal import isal_zlib

from fractally.store.fileio import WRITE_PIECE, write_to

__all__ = [
    "MSGPACK_VERSION",
    "MAX_MSGPACK_PIXELS",
    "PNG_COMPRESS_LEVEL",
    "MsgpackLayout",
    "MsgpackResult",
    "DeflatedRows",
    "PngStreamWriter",
    "png_head",
    "png_tail",
    "write_band_chunks",
    "adler32_combine",
    "deflate_filtered",
    "deflate_rows",
    "filtered_rows",
    "decode_msgpack",
    "decode_png",
    "decode_tile",
    "encode_msgpack",
    "msgpack_layout",
    "encode_png",
    "encode_tile",
    "tile_counts_dtype",
    "write_msgpack_stream",
]

MSGPACK_VERSION = 1
MAX_MSGPACK_PIXELS = (2**32 - 1) // 4
PNG_COMPRESS_LEVEL = 2
"""ISA-L deflate level (0-3) of every PNG we write: 2 is level 3's size within 4 % at 60 % of its time."""

_COUNTS_DTYPE = np.dtype("<u4")
_SMOOTH_DTYPE = np.dtype("<f4")


# --- msgpack -----------------------------------------------------------------


@dataclass(frozen=True)
class MsgpackResult:
    """A decoded msgpack result or tile. Arrays are (height, width) and read-only
    (views of the input bytes, no copy); ``smooth`` is None when the map has none
    (docs/api.md makes it optional; our encoders always write it)."""

    counts: np.ndarray
    smooth: np.ndarray | None
    max_iter: int
    spec: dict | None = None

    @property
    def width(self) -> int:
        return self.counts.shape[1]

    @property
    def height(self) -> int:
        return self.counts.shape[0]


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"image must be at least 1x1, got {width}x{height}")
    if width * height > MAX_MSGPACK_PIXELS:
        raise ValueError(
            f"{width}x{height} is too many pixels for a msgpack result "
            f"(at most {MAX_MSGPACK_PIXELS}: msgpack bin lengths are 32-bit)"
        )


def _as_counts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts)
    if not np.can_cast(counts.dtype, _COUNTS_DTYPE, "safe"):
        raise ValueError(f"counts must be uint32 (or a narrower unsigned type), got {counts.dtype}")
    return np.ascontiguousarray(counts, dtype=_COUNTS_DTYPE)


def _as_smooth(smooth: np.ndarray) -> np.ndarray:
    smooth = np.asarray(smooth)
    if not np.can_cast(smooth.dtype, _SMOOTH_DTYPE, "same_kind"):
        raise ValueError(f"smooth must be a float array, got {smooth.dtype}")
    return np.ascontiguousarray(smooth, dtype=_SMOOTH_DTYPE)


def _check_band(counts: np.ndarray, smooth: np.ndarray, width: int) -> None:
    if counts.ndim != 2 or counts.shape[1] != width or smooth.shape != counts.shape:
        raise ValueError(
            f"counts and smooth must both be (rows, {width}), got {counts.shape} and {smooth.shape}"
        )


def _header_pairs(width: int, height: int, max_iter: int, spec: dict | None) -> list[tuple]:
    """Key-value pairs before the arrays; shared by both encoders so they agree byte for byte."""
    pairs: list[tuple] = [
        ("version", MSGPACK_VERSION),
        ("width", int(width)),
        ("height", int(height)),
        ("max_iter", int(max_iter)),
        ("dtype", "uint32"),
        ("smooth_dtype", "float32"),
    ]
    if spec is not None:
        pairs.append(("spec", spec))
    return pairs


def encode_msgpack(
    counts: np.ndarray, smooth: np.ndarray, max_iter: int, spec: dict | None = None
) -> bytes:
    """Pack a result (or a tile) whole: (H, W) counts and smooth values, and the spec if given."""
    counts, smooth = _as_counts(counts), _as_smooth(smooth)
    if counts.ndim != 2 or smooth.shape != counts.shape:
        raise ValueError(
            f"counts and smooth must be 2-D arrays of one shape, got {counts.shape} and {smooth.shape}"
        )
    height, width = counts.shape
    _check_size(width, height)
    doc = dict(_header_pairs(width, height, max_iter, spec))
    doc["counts"] = memoryview(counts).cast("B")
    doc["smooth"] = memoryview(smooth).cast("B")
    return msgpack.packb(doc, use_bin_type=True)


def _bin_header(n: int) -> bytes:
    # msgpack's Packer has no pack_bin_header; these are the spec's bin 8/16/32
    # headers, the ones packb picks (checked byte for byte by the tests).
    if n < 2**8:
        return struct.pack(">BB", 0xC4, n)
    if n < 2**16:
        return struct.pack(">BH", 0xC5, n)
    return struct.pack(">BI", 0xC6, n)


@dataclass(frozen=True)
class MsgpackLayout:
    """Where the parts of a msgpack result (or tile) sit in its bytes, known from the size alone:
    ``head`` (the map up to the counts' bytes), the counts, ``middle`` (the "smooth" key and its
    bin header), the smooth values. A writer can fill the arrays in any order, at their offsets."""

    head: bytes
    middle: bytes
    counts_bytes: int
    smooth_bytes: int

    @property
    def counts_at(self) -> int:
        return len(self.head)

    @property
    def smooth_at(self) -> int:
        return len(self.head) + self.counts_bytes + len(self.middle)

    @property
    def size(self) -> int:
        return self.smooth_at + self.smooth_bytes


def msgpack_layout(width: int, height: int, max_iter: int, spec: dict | None = None,
                   counts_dtype: np.dtype = _COUNTS_DTYPE) -> MsgpackLayout:
    """The layout of ``encode_msgpack``'s bytes for an image of this size (ValueError if too big);
    ``counts_dtype`` narrower for a tile (``encode_tile``)."""
    _check_size(width, height)
    packer = msgpack.Packer(use_bin_type=True)
    pairs = [(k, counts_dtype.name if k == "dtype" else v) for k, v in _header_pairs(width, height, max_iter, spec)]
    head = [packer.pack_map_header(len(pairs) + 2)]
    head += [packer.pack(x) for pair in pairs for x in pair]
    counts_bytes, smooth_bytes = width * height * counts_dtype.itemsize, width * height * _SMOOTH_DTYPE.itemsize
    head += [packer.pack("counts"), _bin_header(counts_bytes)]
    return MsgpackLayout(b"".join(head), packer.pack("smooth") + _bin_header(smooth_bytes), counts_bytes, smooth_bytes)


def write_msgpack_stream(
    fileobj: BinaryIO,
    width: int,
    height: int,
    max_iter: int,
    bands: Iterable[tuple[np.ndarray, np.ndarray]],
    spec: dict | None = None,
) -> None:
    """Write the msgpack result of ``encode_msgpack`` band by band, byte for byte the same.

    ``bands`` yields ``(counts, smooth)`` pairs of whole rows, top to bottom, and is
    read once. msgpack needs all of ``counts`` before ``smooth`` begins, but both
    arrays' places in the file are known from the size alone (``msgpack_layout``): a
    seekable ``fileobj`` (a file, BytesIO) gets each band's smooth values written straight
    to their place after the counts; otherwise they wait in a temporary file (in memory up
    to 64 MiB, then on disk). Memory stays at about one band. Raises ValueError if the rows
    do not add up to ``height``; by then ``fileobj`` holds a partial result, so write to a
    temporary name.
    """
    layout = msgpack_layout(width, height, max_iter, spec)
    seekable = fileobj.seekable() if hasattr(fileobj, "seekable") else False
    base = fileobj.tell() if seekable else 0
    fileobj.write(layout.head)
    if seekable:
        fileobj.seek(base + layout.smooth_at - len(layout.middle))
        fileobj.write(layout.middle)
    rows = 0
    with tempfile.SpooledTemporaryFile(max_size=64 * 2**20) as spill:
        for counts, smooth in bands:
            counts, smooth = _as_counts(counts), _as_smooth(smooth)
            _check_band(counts, smooth, width)
            if rows + counts.shape[0] > height:
                raise ValueError(f"bands hold more than the {height} rows of the image")
            if seekable:
                fileobj.seek(base + layout.counts_at + rows * width * 4)
                write_to(fileobj, counts)
                fileobj.seek(base + layout.smooth_at + rows * width * 4)
                write_to(fileobj, smooth)
            else:
                write_to(fileobj, counts)
                write_to(spill, smooth)
            rows += counts.shape[0]
        if rows != height:
            raise ValueError(f"bands held {rows} rows, the image has {height}")
        if seekable:
            fileobj.seek(base + layout.size)
            return
        fileobj.write(layout.middle)
        spill.seek(0)
        shutil.copyfileobj(spill, fileobj, WRITE_PIECE)


def _field(doc: dict, key: str, kind: type) -> object:
    if key not in doc:
        raise ValueError(f"not a msgpack result: missing {key!r}")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"not a msgpack result: {key!r} should be {kind.__name__}, got {type(value).__name__}")
    return value


def _array(doc: dict, key: str, dtype: np.dtype, width: int, height: int) -> np.ndarray:
    raw = _field(doc, key, bytes)
    if len(raw) != width * height * 4:
        raise ValueError(
            f"not a msgpack result: {key!r} holds {len(raw)} bytes, "
            f"{width}x{height} needs {width * height * 4}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(height, width)


def decode_msgpack(data: bytes) -> MsgpackResult:
    """Unpack and check a msgpack result or tile; any malformation is a ValueError saying what."""
    try:
        doc = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a msgpack result: undecodable msgpack ({exc or type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"not a msgpack result: expected a map, got {type(doc).__name__}")
    version = doc.get("version", MSGPACK_VERSION)
    if version != MSGPACK_VERSION:
        raise ValueError(f"unsupported msgpack result version {version!r} (this reader knows 1)")
    width = _field(doc, "width", int)
    height = _field(doc, "height", int)
    max_iter = _field(doc, "max_iter", int)
    if width < 1 or height < 1 or max_iter < 1:
        raise ValueError("not a msgpack result: width, height and max_iter must be at least 1")
    if doc.get("dtype") != "uint32":
        raise ValueError(f"unsupported counts dtype {doc.get('dtype')!r}; expected 'uint32'")
    counts = _array(doc, "counts", _COUNTS_DTYPE, width, height)
    smooth = None
    if "smooth" in doc:
        if doc.get("smooth_dtype", "float32") != "float32":
            raise ValueError(f"unsupported smooth dtype {doc.get('smooth_dtype')!r}; expected 'float32'")
        smooth = _array(doc, "smooth", _SMOOTH_DTYPE, width, height)
    spec = doc.get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise ValueError("not a msgpack result: 'spec' should be a map")
    return MsgpackResult(counts=counts, smooth=smooth, max_iter=max_iter, spec=spec)


# Tiles in the store are small msgpack results: one format, one decoder; only their counts
# are narrower when max_iter allows (lossless: counts never exceed max_iter).

_TILE_COUNTS_DTYPES = {"uint8": np.dtype("<u1"), "uint16": np.dtype("<u2"), "uint32": _COUNTS_DTYPE}
_TILE_COUNTS_LIMITS = tuple((int(np.iinfo(dtype).max), dtype) for dtype in _TILE_COUNTS_DTYPES.values())


def tile_counts_dtype(max_iter: int) -> np.dtype:
    """The narrowest little-endian unsigned type that holds every count up to ``max_iter``."""
    for limit, dtype in _TILE_COUNTS_LIMITS:  # limits read once: np.iinfo costs microseconds a call
        if max_iter <= limit:
            return dtype
    raise ValueError(f"max_iter {max_iter} does not fit a uint32 count")


@functools.lru_cache(maxsize=256)
def _tile_layout(width: int, height: int, max_iter: int) -> tuple[np.dtype, MsgpackLayout]:
    """A tile's counts dtype and layout: they depend on the shape and ``max_iter`` only, and a job's
    tiles share a few shapes, so each is packed once (packing took half of ``encode_tile``'s time
    on small tiles)."""
    dtype = tile_counts_dtype(max_iter)
    return dtype, msgpack_layout(width, height, max_iter, counts_dtype=dtype)


def encode_tile(counts: np.ndarray, smooth: np.ndarray, max_iter: int) -> bytes:
    """A tile for the store: ``encode_msgpack``'s map, counts as ``tile_counts_dtype(max_iter)``.

    Built in one join (no msgpack copy of the arrays); raises ValueError if a count exceeds
    ``max_iter`` (it would not survive the narrowing).
    """
    counts, smooth = np.asarray(counts), _as_smooth(smooth)
    if counts.ndim != 2 or smooth.shape != counts.shape:
        raise ValueError(
            f"counts and smooth must be 2-D arrays of one shape, got {counts.shape} and {smooth.shape}"
        )
    if not np.can_cast(counts.dtype, _COUNTS_DTYPE, "safe"):
        raise ValueError(f"counts must be uint32 (or a narrower unsigned type), got {counts.dtype}")
    height, width = counts.shape
    _check_size(width, height)
    if counts.size and int(counts.max()) > max_iter:
        raise ValueError(f"a count exceeds max_iter {max_iter}")
    dtype, layout = _tile_layout(width, height, max_iter)
    narrow = np.ascontiguousarray(counts, dtype=dtype)
    return b"".join([layout.head, memoryview(narrow).cast("B"), layout.middle, memoryview(smooth).cast("B")])


def decode_tile(data: bytes) -> MsgpackResult:
    """Unpack a tile: like ``decode_msgpack``, but counts may be uint8 or uint16 (returned as stored:
    every consumer widens on its own where it must, e.g. the msgpack result writer)."""
    try:
        doc = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"not a tile: undecodable msgpack ({exc or type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("dtype") not in _TILE_COUNTS_DTYPES:
        raise ValueError("not a tile: expected a msgpack map with dtype uint8, uint16 or uint32")
    if doc["dtype"] == "uint32":
        return decode_msgpack(data)  # the result format itself (tiles written before narrowing)
    width, height = _field(doc, "width", int), _field(doc, "height", int)
    max_iter = _field(doc, "max_iter", int)
    if width < 1 or height < 1 or max_iter < 1:
        raise ValueError("not a tile: width, height and max_iter must be at least 1")
    dtype = _TILE_COUNTS_DTYPES[doc["dtype"]]
    raw = _field(doc, "counts", bytes)
    if len(raw) != width * height * dtype.itemsize:
        raise ValueError(f"not a tile: 'counts' holds {len(raw)} bytes, {width}x{height} {dtype.name} needs "
                         f"{width * height * dtype.itemsize}")
    counts = np.frombuffer(raw, dtype=dtype).reshape(height, width)
    return MsgpackResult(counts=counts, smooth=_array(doc, "smooth", _SMOOTH_DTYPE, width, height),
                         max_iter=max_iter)


# --- PNG -----------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IDAT_SIZE = 256 * 1024  # compressed bytes per IDAT chunk, at most
_ZLIB_HEADER = b"\x78\x5e"  # deflate, 32 KiB window
_ROWS_BYTES = 4 * 2**20  # filter and compress at most this many raw bytes at once


def _write_chunk(fileobj: BinaryIO, kind: bytes, parts: list[bytes]) -> None:
    """A PNG chunk whose data is ``b"".join(parts)``, written without joining: the parts go out as they are."""
    fileobj.write(struct.pack(">I", sum(map(len, parts))) + kind)
    crc = isal_zlib.crc32(kind)
    for part in parts:
        crc = isal_zlib.crc32(part, crc)
        write_to(fileobj, part)
    fileobj.write(struct.pack(">I", crc))


_ADLER_MOD = 65521


def adler32_combine(adler_a: int, adler_b: int, len_b: int) -> int:
    """Adler-32 of A+B from those of A and B (RFC 1950's sums, shifted by B's length).

    With ``a`` = 1 + sum of bytes and ``b`` = sum of the running ``a`` values,
    appending B adds (a_A - 1) to each of B's ``len_b`` running ``a`` values.
    """
    a_a, b_a = adler_a & 0xFFFF, adler_a >> 16
    a_b, b_b = adler_b & 0xFFFF, adler_b >> 16
    a = (a_a + a_b - 1) % _ADLER_MOD
    b = (b_a + b_b + len_b * (a_a - 1)) % _ADLER_MOD
    return (b << 16) | a


@dataclass(frozen=True)
class DeflatedRows:
    """A band of PNG rows compressed on its own: raw deflate ending on a byte boundary
    (``Z_SYNC_FLUSH``), so independently compressed bands concatenate into one valid
    stream (how pigz compresses in parallel). ``adler`` and ``raw_len`` let the writer
    build the zlib trailer without the raw bytes."""

    rows: int
    data: bytes
    adler: int
    raw_len: int


def deflate_rows(rgb_band: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> DeflatedRows:
    """Filter (type None) and compress a band of (h, W, 3) uint8 rows; safe in any thread
    (ISA-L releases the GIL), so bands compress in parallel."""
    band = np.asarray(rgb_band)
    if band.dtype != np.uint8 or band.ndim != 3 or band.shape[2] != 3:
        raise ValueError(f"rows must be (h, W, 3) uint8, got {band.shape} {band.dtype}")
    stride = band.shape[1] * 3
    step = max(1, _ROWS_BYTES // (stride + 1))
    chunks = []
    for start in range(0, band.shape[0], step):
        part = band[start : start + step].reshape(-1, stride)
        raw = filtered_rows(part.shape[0], band.shape[1])
        raw[:, 1:] = part
        chunks.append(raw)
    return _deflate_chunks(chunks, band.shape[0], compress_level)


def filtered_rows(rows: int, width: int) -> np.ndarray:
    """An empty (rows, 1 + 3 * width) uint8 buffer of PNG rows, filter type None set: fill
    ``[:, 1:]`` with RGB (e.g. tile by tile) and hand it to ``deflate_filtered``, which saves
    joining the RGB first and copying it again."""
    # Zeros (filter type None in column 0) from calloc: fresh pages come zeroed from the kernel when
    # the colouring loop first writes them, outside the GIL. np.empty and a column write faulted the
    # whole band in while holding the GIL (10-43 ms stalls of every request, docs/benchmarks.md).
    return np.zeros((rows, 1 + 3 * width), np.uint8)


def deflate_filtered(raw: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> DeflatedRows:
    """``deflate_rows`` of rows already laid out by ``filtered_rows``; the same bytes."""
    raw = np.asarray(raw)
    if raw.dtype != np.uint8 or raw.ndim != 2 or raw.shape[1] % 3 != 1 or (raw.size and raw[:, 0].any()):
        raise ValueError(f"rows must come from filtered_rows, got {raw.shape} {raw.dtype}")
    step = max(1, _ROWS_BYTES // raw.shape[1])
    return _deflate_chunks([raw[start : start + step] for start in range(0, raw.shape[0], step)],
                           raw.shape[0], compress_level)


def _deflate_chunks(chunks: list[np.ndarray], rows: int, compress_level: int) -> DeflatedRows:
    z = isal_zlib.compressobj(compress_level, isal_zlib.DEFLATED, -15)  # raw deflate: no header, no trailer
    out, adler, raw_len = [], 1, 0
    for raw in chunks:
        out.append(z.compress(raw))
        adler = isal_zlib.adler32(raw, adler)
        raw_len += raw.size
    out.append(z.flush(isal_zlib.Z_SYNC_FLUSH))
    return DeflatedRows(rows, b"".join(out), adler, raw_len)


def png_head(width: int, height: int) -> bytes:
    """What a PNG starts with, before its first band: signature and IHDR (8-bit RGB, no interlace)."""
    if not (1 <= width < 2**31 and 1 <= height < 2**31):
        raise ValueError(f"PNG size must be 1..2**31-1 each way, got {width}x{height}")
    out = io.BytesIO()
    out.write(_PNG_SIGNATURE)
    _write_chunk(out, b"IHDR", [struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)])
    return out.getvalue()


def write_band_chunks(fileobj: BinaryIO, piece: DeflatedRows, first: bool) -> int:
    """Write one band's IDAT chunks (at most ``_IDAT_SIZE`` bytes of data each); the first band of an image
    carries the zlib header. Bytes written.

    Each band is framed on its own, never sharing a chunk with its neighbours, so a band's bytes
    depend only on the band: bands framed by different processes (band-parallel assembly,
    ``fractally.jobs.pieces``) join into the same file a single writer makes."""
    data = memoryview(_ZLIB_HEADER + piece.data if first else piece.data)
    written = 0
    for start in range(0, len(data), _IDAT_SIZE):
        part = data[start:start + _IDAT_SIZE]
        _write_chunk(fileobj, b"IDAT", [part])
        written += len(part) + 12
    return written


def png_tail(adler: int) -> bytes:
    """What a PNG ends with after its last band: the final deflate block and the Adler-32 of every
    band's raw rows (``adler32_combine``), in an IDAT of their own, then IEND."""
    out = io.BytesIO()
    _write_chunk(out, b"IDAT", [b"\x03\x00" + struct.pack(">I", adler)])  # empty fixed-Huffman block, BFINAL
    _write_chunk(out, b"IEND", [])
    return out.getvalue()


class PngStreamWriter:
    """Write an 8-bit RGB PNG to ``fileobj`` one band of rows at a time.

    Memory is one band plus the deflater's window, whatever the image size, so
    assemble can build pictures far larger than RAM. Every row uses filter
    type None (see the module docstring for why). Bands arrive as rows
    (``write_rows``) or already compressed by ``deflate_rows`` in another
    thread (``write_deflated``), in order; each is framed on its own
    (``write_band_chunks``). Use as a context manager or call ``close()``;
    closing checks that exactly ``height`` rows came.
    """

    def __init__(self, fileobj: BinaryIO, width: int, height: int, compress_level: int = PNG_COMPRESS_LEVEL) -> None:
        head = png_head(width, height)
        self._f = fileobj
        self.width, self.height = width, height
        self.compress_level = compress_level
        self.rows_written = 0
        self._adler = 1
        self._closed = False
        self._f.write(head)

    def write_rows(self, rgb_band: np.ndarray) -> None:
        """Append whole rows: an (h, width, 3) uint8 array, top to bottom."""
        band = np.asarray(rgb_band)
        if band.ndim != 3 or band.shape[1:] != (self.width, 3):
            raise ValueError(f"rows must be (h, {self.width}, 3) uint8, got {band.shape} {band.dtype}")
        self.write_deflated(deflate_rows(band, self.compress_level))

    def write_deflated(self, piece: DeflatedRows) -> None:
        """Append a band compressed by ``deflate_rows`` (the next one in order)."""
        if self._closed:
            raise ValueError("PngStreamWriter is closed")
        if piece.raw_len != piece.rows * (self.width * 3 + 1):
            raise ValueError(f"the band's rows are not {self.width} pixels wide")
        if self.rows_written + piece.rows > self.height:
            raise ValueError(f"more rows than the image's {self.height}")
        self._adler = adler32_combine(self._adler, piece.adler, piece.raw_len)
        write_band_chunks(self._f, piece, first=self.rows_written == 0)
        self.rows_written += piece.rows

    def close(self) -> None:
        """Finish the stream (final deflate block, Adler-32, IEND). Raises ValueError if rows are missing."""
        if self._closed:
            return
        if self.rows_written != self.height:
            raise ValueError(f"PNG got {self.rows_written} rows, the image has {self.height}")
        self._f.write(png_tail(self._adler))
        self._closed = True

    def __enter__(self) -> PngStreamWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()


def encode_png(rgb: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """Encode a whole (H, W, 3) uint8 image as PNG bytes (``PngStreamWriter`` in one band)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    out = io.BytesIO()
    with PngStreamWriter(out, rgb.shape[1], rgb.shape[0], compress_level) as writer:
        writer.write_rows(rgb)
    return out.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes to an (H, W, 3) uint8 array (via Pillow)."""
    from PIL import Image  # only here: render_tile's cold start never decodes a PNG

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))
