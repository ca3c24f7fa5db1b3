"""Writing large buffers to files: in pieces of at most ``WRITE_PIECE`` bytes a system call.

One ``write`` of a few megabytes cost this project's Linux machines (kernel 6.18, ext4) about
five times the CPU of the same bytes written a megabyte at a time: 85-98 ms against 16-18 ms
for 66 MB, nearly all of it in the kernel's copy into the page cache
(``copy_folio_from_iter_atomic``), which a large write fills with large folios. tmpfs takes
either at the same cost. Pieces of 1 MiB were the cheapest of 64 KiB to 2 MiB, and elsewhere
they cost one system call a megabyte: nothing. docs/benchmarks.md, "Kernel", has the figures.

Every large write of an image, a tile or a band goes through here: the local store's objects,
``fractally render``'s msgpack bands, the msgpack result stream and the PNG writer's chunks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, BinaryIO

#: Bytes a system call writes at most.
WRITE_PIECE = 1 << 20


def pieces(data: Any) -> Iterator[memoryview]:
    """``data`` (any contiguous buffer: bytes, a numpy array) as byte views of at most ``WRITE_PIECE``."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), WRITE_PIECE):
        yield view[start : start + WRITE_PIECE]


def write_all(fd: int, data: Any) -> None:
    """Write all of ``data`` at ``fd``'s position (a regular file may take a piece in parts)."""
    for piece in pieces(data):
        while piece:
            piece = piece[os.write(fd, piece) :]


def pwrite_all(fd: int, data: Any, offset: int) -> None:
    """Write all of ``data`` at ``offset`` in ``fd``, leaving its position alone (safe from any thread)."""
    for piece in pieces(data):
        while piece:
            written = os.pwrite(fd, piece, offset)
            piece, offset = piece[written:], offset + written


def write_to(fileobj: BinaryIO, data: Any) -> None:
    """``fileobj.write(data)`` in pieces (a buffered file passes pieces this large straight through)."""
    for piece in pieces(data):
        fileobj.write(piece)
