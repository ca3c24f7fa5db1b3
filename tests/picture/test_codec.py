"""Codecs: msgpack and PNG round trips, and the streaming writers equal the whole-image encoders."""

from __future__ import annotations

import io
import struct
import zlib

import msgpack
import numpy as np
import pytest
from PIL import Image

from fractally.picture.codec import (
    MAX_MSGPACK_PIXELS,
    PngStreamWriter,
    decode_msgpack,
    decode_png,
    decode_tile,
    encode_msgpack,
    encode_png,
    encode_tile,
    write_msgpack_stream,
)

WIDTH, HEIGHT, MAX_ITER = 257, 131, 500
SPEC = {"fractal": "julia", "c": [-0.8, 0.156], "center": [0.0, 0.0], "scale": 3.2, "width": WIDTH,
        "height": HEIGHT, "max_iter": MAX_ITER, "format": "msgpack", "colormap": "ocean"}
BAND_CUTS = [0, 1, 40, 41, 100, HEIGHT]  # uneven bands, one of a single row


def result_arrays(height: int = HEIGHT, width: int = WIDTH):
    rng = np.random.default_rng(7)
    counts = rng.integers(0, MAX_ITER + 1, (height, width), dtype=np.uint32)
    smooth = (counts + rng.random((height, width))).astype(np.float32)
    return counts, smooth


def picture(height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Smooth areas and noise, so compression has both kinds of input."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x % 256, y % 256, (x * y) % 256], axis=-1).astype(np.uint8)
    rgb[: height // 3] = np.random.default_rng(3).integers(0, 256, (height // 3, width, 3), dtype=np.uint8)
    return rgb


def bands(counts, smooth, cuts=BAND_CUTS):
    for a, b in zip(cuts, cuts[1:]):
        yield counts[a:b], smooth[a:b]


# --- msgpack -------------------------------------------------------------------


def test_msgpack_round_trip_keeps_counts_smooth_and_spec_exactly():
    counts, smooth = result_arrays()
    result = decode_msgpack(encode_msgpack(counts, smooth, MAX_ITER, SPEC))
    np.testing.assert_array_equal(result.counts, counts)
    assert result.smooth.dtype == np.float32
    assert result.smooth.tobytes() == smooth.tobytes()
    assert result.spec == SPEC
    assert result.max_iter == MAX_ITER


def test_msgpack_result_has_the_fields_api_md_promises():
    counts, smooth = result_arrays(3, 5)
    doc = msgpack.unpackb(encode_msgpack(counts, smooth, MAX_ITER, SPEC))
    assert (doc["width"], doc["height"], doc["max_iter"], doc["dtype"]) == (5, 3, MAX_ITER, "uint32")
    assert doc["counts"] == counts.astype("<u4").tobytes()  # little-endian, row-major
    assert doc["smooth_dtype"] == "float32"
    assert doc["smooth"] == smooth.astype("<f4").tobytes()
    assert doc["version"] == 1


def test_msgpack_without_spec_has_no_spec():
    counts, smooth = result_arrays(2, 2)
    assert decode_msgpack(encode_msgpack(counts, smooth, MAX_ITER)).spec is None


def test_tiles_round_trip_through_the_same_format():
    counts, smooth = result_arrays(16, 16)
    tile = decode_tile(encode_tile(counts, smooth, MAX_ITER))
    np.testing.assert_array_equal(tile.counts, counts)
    np.testing.assert_array_equal(tile.smooth, smooth)


@pytest.mark.parametrize("max_iter, dtype", [(1, "uint8"), (255, "uint8"), (256, "uint16"), (65535, "uint16"),
                                             (65536, "uint32")])
def test_tiles_keep_counts_in_the_narrowest_type_that_holds_max_iter(max_iter, dtype):
    rng = np.random.default_rng(7)
    counts = rng.integers(0, max_iter + 1, (9, 11), dtype=np.uint32)
    counts[0, 0] = max_iter
    smooth = rng.random((9, 11), dtype=np.float32)
    data = encode_tile(counts, smooth, max_iter)
    assert msgpack.unpackb(data)["dtype"] == dtype
    tile = decode_tile(data)
    np.testing.assert_array_equal(tile.counts, counts)
    np.testing.assert_array_equal(tile.smooth, smooth)
    assert tile.max_iter == max_iter
    if dtype == "uint32":  # a wide tile is the result format byte for byte
        assert data == encode_msgpack(counts, smooth, max_iter)


def test_a_tile_count_above_max_iter_is_refused_not_wrapped():
    with pytest.raises(ValueError, match="max_iter"):
        encode_tile(np.array([[256]], np.uint32), np.zeros((1, 1), np.float32), 255)


@pytest.mark.parametrize("rows, width", [(1, 1), (3, 7), (700, 2100)])
def test_rows_filled_in_place_deflate_to_the_same_bytes(rows, width):
    from fractally.picture.codec import deflate_filtered, deflate_rows, filtered_rows

    rgb = (np.random.default_rng(rows).integers(0, 8, (rows, width, 3)) * 30).astype(np.uint8)
    raw = filtered_rows(rows, width)
    raw[:, 1:] = rgb.reshape(rows, -1)
    assert deflate_filtered(raw) == deflate_rows(rgb)


def test_minimal_api_result_without_smooth_decodes():
    counts, _ = result_arrays(2, 3)
    data = msgpack.packb({"width": 3, "height": 2, "max_iter": MAX_ITER, "dtype": "uint32",
                          "counts": counts.astype("<u4").tobytes()})
    result = decode_msgpack(data)
    np.testing.assert_array_equal(result.counts, counts)
    assert result.smooth is None


class Unseekable(io.BytesIO):
    """A pipe-like output: the writer must not seek (it spills smooth values instead)."""

    def seekable(self) -> bool:
        return False


@pytest.mark.parametrize("output", [io.BytesIO, Unseekable])
@pytest.mark.parametrize("size", [(131, 257), (1, 1), (3, 21), (100, 200)])  # bin8, bin8, bin16, bin32
def test_streamed_msgpack_is_byte_identical_to_whole(size, output):
    counts, smooth = result_arrays(*size)
    cuts = sorted({0, size[0], *[c for c in BAND_CUTS if c < size[0]]})
    out = output()
    write_msgpack_stream(out, size[1], size[0], MAX_ITER, bands(counts, smooth, cuts), SPEC)
    assert out.getvalue() == encode_msgpack(counts, smooth, MAX_ITER, SPEC)


def test_streamed_msgpack_with_missing_rows_raises():
    counts, smooth = result_arrays()
    with pytest.raises(ValueError, match="rows"):
        write_msgpack_stream(io.BytesIO(), WIDTH, HEIGHT, MAX_ITER, bands(counts, smooth, [0, 50, 100]))


def test_streamed_msgpack_with_wrong_band_width_raises():
    counts, smooth = result_arrays()
    with pytest.raises(ValueError):
        write_msgpack_stream(io.BytesIO(), WIDTH, HEIGHT, MAX_ITER, [(counts[:, :-1], smooth[:, :-1])])


def test_msgpack_refuses_images_beyond_a_32_bit_bin():
    # 32768 x 32768 counts are 2**32 bytes, one more than msgpack's bin32 holds.
    assert 32768 * 32768 > MAX_MSGPACK_PIXELS >= 32768 * 32767
    with pytest.raises(ValueError, match="too many pixels"):
        write_msgpack_stream(io.BytesIO(), 32768, 32768, MAX_ITER, [])


def test_msgpack_refuses_signed_counts():
    counts, smooth = result_arrays(2, 2)
    with pytest.raises(ValueError, match="uint32"):
        encode_msgpack(counts.astype(np.int64), smooth, MAX_ITER)


def _valid_doc() -> dict:
    counts, smooth = result_arrays(2, 3)
    return msgpack.unpackb(encode_msgpack(counts, smooth, MAX_ITER, SPEC))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="not-msgpack"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="png"),
        pytest.param(msgpack.packb([1, 2, 3]), id="not-a-map"),
        pytest.param(msgpack.packb({"width": 3}), id="missing-fields"),
    ],
)
def test_undecodable_msgpack_raises_value_error(data):
    with pytest.raises(ValueError, match="msgpack result"):
        decode_msgpack(data)


def test_truncated_msgpack_raises_value_error():
    counts, smooth = result_arrays()
    data = encode_msgpack(counts, smooth, MAX_ITER, SPEC)
    with pytest.raises(ValueError):
        decode_msgpack(data[:-10])


@pytest.mark.parametrize(
    "change, message",
    [
        ({"counts": b"\0" * 20}, "bytes"),  # wrong length
        ({"smooth": b"\0" * 28}, "bytes"),
        ({"dtype": "uint16"}, "dtype"),
        ({"smooth_dtype": "float64"}, "dtype"),
        ({"width": "3"}, "width"),
        ({"height": 0}, "at least 1"),
        ({"max_iter": True}, "max_iter"),
        ({"version": 2}, "version"),
        ({"spec": [1, 2]}, "spec"),
        ({"counts": "text"}, "counts"),
    ],
)
def test_malformed_msgpack_fields_raise_value_error_saying_which(change, message):
    doc = _valid_doc()
    doc.update(change)
    with pytest.raises(ValueError, match=message):
        decode_msgpack(msgpack.packb(doc))


# --- PNG -----------------------------------------------------------------------


def test_png_round_trip_keeps_pixels_exactly():
    rgb = picture()
    np.testing.assert_array_equal(decode_png(encode_png(rgb)), rgb)


def test_png_is_an_8_bit_rgb_image_to_pillow():
    with Image.open(io.BytesIO(encode_png(picture()))) as im:
        im.load()
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (WIDTH, HEIGHT))


def test_streamed_png_decodes_to_the_same_pixels_as_whole():
    rgb = picture()
    out = io.BytesIO()
    writer = PngStreamWriter(out, WIDTH, HEIGHT)
    for a, b in zip(BAND_CUTS, BAND_CUTS[1:]):
        writer.write_rows(rgb[a:b])
    writer.close()
    streamed = decode_png(out.getvalue())
    np.testing.assert_array_equal(streamed, rgb)
    np.testing.assert_array_equal(streamed, decode_png(encode_png(rgb)))


def test_streamed_png_chunks_have_correct_crcs():
    data = encode_png(picture())
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload), kind
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds


def test_streamed_png_spreads_large_images_over_several_idat_chunks():
    rgb = np.random.default_rng(5).integers(0, 256, (300, 400, 3), dtype=np.uint8)  # ~360 kB, incompressible
    data = encode_png(rgb)
    assert data.count(b"IDAT") >= 2
    np.testing.assert_array_equal(decode_png(data), rgb)


def test_streamed_png_with_missing_rows_raises_at_close():
    writer = PngStreamWriter(io.BytesIO(), WIDTH, HEIGHT)
    writer.write_rows(picture()[:100])
    with pytest.raises(ValueError, match="rows"):
        writer.close()


def test_streamed_png_refuses_extra_rows():
    writer = PngStreamWriter(io.BytesIO(), WIDTH, 2)
    with pytest.raises(ValueError, match="rows"):
        writer.write_rows(picture()[:3])


def test_streamed_png_refuses_rows_of_the_wrong_width():
    writer = PngStreamWriter(io.BytesIO(), WIDTH, HEIGHT)
    with pytest.raises(ValueError):
        writer.write_rows(picture(width=WIDTH - 1)[:10])


def test_adler32_combine_equals_adler32_of_the_concatenation():
    import random
    import zlib

    from fractally.picture.codec import adler32_combine

    rng = random.Random(7)
    for _ in range(50):
        a = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 5000)))
        b = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 70000)))
        assert adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)


def test_bands_deflated_in_parallel_join_into_one_valid_png():
    from concurrent.futures import ThreadPoolExecutor

    from fractally.picture.codec import deflate_rows

    rng = np.random.default_rng(3)
    rgb = (rng.integers(0, 4, (203, 131, 3)) * 60).astype(np.uint8)  # repetitive, like LUT colours
    cuts = [0, 1, 50, 51, 130, 203]
    with ThreadPoolExecutor(3) as pool:
        pieces = list(pool.map(lambda i: deflate_rows(rgb[cuts[i]:cuts[i + 1]]), range(len(cuts) - 1)))
    out = io.BytesIO()
    with PngStreamWriter(out, 131, 203) as writer:
        for piece in pieces:
            writer.write_deflated(piece)
    assert np.array_equal(decode_png(out.getvalue()), rgb)


def test_deflated_band_of_the_wrong_width_is_rejected():
    from fractally.picture.codec import deflate_rows

    writer = PngStreamWriter(io.BytesIO(), 10, 10)
    with pytest.raises(ValueError):
        writer.write_deflated(deflate_rows(np.zeros((2, 11, 3), np.uint8)))
