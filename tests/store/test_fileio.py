"""fractally/store/fileio.py: large buffers reach files whole, a piece of at most WRITE_PIECE bytes a call,
and every writer of images and tiles goes through it."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fractally.store import fileio
from fractally.picture.codec import decode_msgpack, encode_msgpack, write_msgpack_stream
from fractally.picture.compose import render_bands, render_image_file, write_image
from fractally.picture.spec import parse_spec
from fractally.store.local import LocalStore
from tests.support.store import SMALL_PIECE

DATA = np.arange(12_345, dtype=np.uint32)  # 49 380 bytes: 50 pieces, the last one short


def test_pieces_cover_the_buffer_in_order_and_none_is_larger_than_a_piece(small_write_pieces):
    parts = list(fileio.pieces(DATA))
    assert max(len(p) for p in parts) == SMALL_PIECE
    assert len(parts) == -(-DATA.nbytes // SMALL_PIECE)
    assert b"".join(parts) == DATA.tobytes()


def test_an_empty_buffer_is_no_piece():
    assert list(fileio.pieces(b"")) == []


def test_write_all_writes_every_byte_a_piece_at_a_time(tmp_path, small_write_pieces):
    with open(tmp_path / "f", "wb") as f:
        f.write(b"head")
        f.flush()
        fileio.write_all(f.fileno(), DATA)
    assert (tmp_path / "f").read_bytes() == b"head" + DATA.tobytes()
    assert sum(small_write_pieces) == DATA.nbytes and max(small_write_pieces) == SMALL_PIECE


def test_pwrite_all_writes_at_the_offset_and_leaves_the_files_position(tmp_path, small_write_pieces):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"x" * 10)
        fileio.pwrite_all(fd, DATA, 7)
        assert os.lseek(fd, 0, os.SEEK_CUR) == 10
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"x" * 7 + DATA.tobytes()
    assert max(small_write_pieces) == SMALL_PIECE


def test_write_to_hands_a_file_object_one_piece_at_a_time(small_write_pieces):
    sizes: list[int] = []

    class Recording(io.BytesIO):
        def write(self, data):
            sizes.append(len(data))
            return super().write(data)

    out = Recording()
    fileio.write_to(out, DATA)
    assert out.getvalue() == DATA.tobytes()
    assert max(sizes) == SMALL_PIECE


def test_the_local_store_writes_an_object_in_pieces(tmp_path, small_write_pieces):
    store = LocalStore(tmp_path)
    store.put("big/object", DATA.tobytes())
    assert store.get("big/object") == DATA.tobytes()
    assert max(small_write_pieces) == SMALL_PIECE


@pytest.mark.parametrize("fmt", ["png", "msgpack"])
def test_a_rendered_file_is_written_in_pieces_and_has_the_same_bytes(tmp_path, small_write_pieces, fmt):
    spec = parse_spec({"c": [-0.8, 0.156], "width": 300, "height": 200, "max_iter": 300, "tile_size": 64,
                       "format": fmt})
    with ThreadPoolExecutor(2) as pool:
        path = render_image_file(spec, tmp_path / f"out.{fmt}", pool)
        expected = io.BytesIO()
        write_image(spec, render_bands(spec, pool), expected, pool)
    assert path.read_bytes() == expected.getvalue()
    if fmt == "msgpack":  # the PNG writer's pieces go through its buffered file object, not os.write
        assert max(small_write_pieces) == SMALL_PIECE


def test_the_msgpack_stream_is_the_same_bytes_when_written_in_pieces(small_write_pieces):
    counts = np.arange(60_000, dtype=np.uint32).reshape(200, 300) % 300
    smooth = counts.astype(np.float32) + 0.5
    out = io.BytesIO()
    write_msgpack_stream(out, 300, 200, 300, [(counts[:120], smooth[:120]), (counts[120:], smooth[120:])])
    assert out.getvalue() == encode_msgpack(counts, smooth, 300)
    np.testing.assert_array_equal(decode_msgpack(out.getvalue()).counts, counts)
