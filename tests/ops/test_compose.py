"""fractally/picture/compose.py: rendering straight into an encoding (``render_image``) makes the same bytes
as encoding rendered bands (``write_image``), whatever the tiling and the number of threads."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from fractally.picture import compose
from fractally.picture.codec import decode_msgpack
from fractally.picture.compose import render_bands, render_image, render_image_file, write_image
from fractally.picture.spec import parse_spec
from fractally.picture.tiling import tile_count


def _spec(fmt: str, width: int, height: int, tile_size: int):
    return parse_spec({"c": [-0.8, 0.156], "width": width, "height": height, "max_iter": 300,
                       "tile_size": tile_size, "format": fmt})


def _via_bands(spec, workers: int) -> bytes:
    out = io.BytesIO()
    with ThreadPoolExecutor(workers) as pool:
        write_image(spec, render_bands(spec, pool), out, pool)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["png", "msgpack"])
@pytest.mark.parametrize("width, height, tile_size, workers", [
    (300, 200, 64, 2),    # edge tiles narrower and shorter than the rest
    (513, 257, 256, 1),   # one worker: a band's finishing jobs queue behind its own tiles
    (64, 1, 16, 3),       # one row of pixels
    (1, 1, 16, 2),        # one pixel
    (1000, 700, 128, 4),  # more workers than cores
])
def test_render_image_is_byte_for_byte_write_image_of_render_bands(fmt, width, height, tile_size, workers):
    spec = _spec(fmt, width, height, tile_size)
    out = io.BytesIO()
    with ThreadPoolExecutor(workers) as pool:
        render_image(spec, out, pool)
    assert out.getvalue() == _via_bands(spec, workers)


def test_render_image_msgpack_starts_at_the_streams_position_and_leaves_it_at_the_end():
    spec = _spec("msgpack", 300, 200, 64)
    out = io.BytesIO()
    out.write(b"already here")
    with ThreadPoolExecutor(2) as pool:
        render_image(spec, out, pool)
    assert out.getvalue()[:12] == b"already here"
    assert out.getvalue()[12:] == _via_bands(spec, 2)
    assert out.tell() == len(out.getvalue())


@pytest.mark.parametrize("fmt", ["png", "msgpack"])
def test_render_image_file_writes_a_real_file_with_the_same_bytes(tmp_path, fmt):
    spec = _spec(fmt, 700, 300, 128)
    with ThreadPoolExecutor(2) as pool:
        path = render_image_file(spec, tmp_path / f"out.{fmt}", pool)
    assert path.read_bytes() == _via_bands(spec, 2)
    assert [p.name for p in tmp_path.iterdir()] == [f"out.{fmt}"]
    if fmt == "msgpack":
        assert decode_msgpack(path.read_bytes()).counts.shape == (300, 700)


def test_render_image_reports_every_tile_once():
    spec = _spec("png", 300, 200, 64)
    seen, lock = [], threading.Lock()

    def on_tile(t):
        with lock:
            seen.append(t.index)

    with ThreadPoolExecutor(2) as pool:
        render_image(spec, io.BytesIO(), pool, on_tile=on_tile)
    assert sorted(seen) == list(range(tile_count(spec)))


@pytest.mark.parametrize("fmt", ["png", "msgpack"])
def test_a_failing_tile_fails_the_render_and_leaves_no_file(tmp_path, monkeypatch, fmt):
    spec = _spec(fmt, 300, 200, 64)
    real = compose.render_tile_arrays

    def flaky(spec_, t):
        if t.index == 7:
            raise RuntimeError("tile 7 broke")
        return real(spec_, t)

    monkeypatch.setattr(compose, "render_tile_arrays", flaky)
    with ThreadPoolExecutor(2) as pool, pytest.raises(RuntimeError, match="tile 7 broke"):
        render_image_file(spec, tmp_path / f"out.{fmt}", pool)
    assert list(tmp_path.iterdir()) == []
