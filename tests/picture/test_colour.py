"""Colouring: every map works, colours are pixel-local, smooth, and inside points stand apart."""

from __future__ import annotations

import numpy as np
import pytest

from fractally.picture.colour import COLORMAPS, DEFAULT_COLORMAP, colour_into, colourize, inside_colour, lut

MAX_ITER = 256


def synthetic(height: int = 97, width: int = 203, max_iter: int = MAX_ITER, seed: int = 1):
    """Counts and smooth values shaped like a kernel's: smooth in [count, count + 1), inside points.

    Values grow down the rows and inside points sit in the lower half only, so bands
    differ in range: colouring normalised per call would show in band-wise tests.
    """
    rng = np.random.default_rng(seed)
    rows = (np.arange(height)[:, None] + 1) / height
    smooth = (rng.random((height, width)) ** 3 * rows * max_iter).astype(np.float32)
    counts = np.floor(smooth).astype(np.uint32)
    inside = (rng.random((height, width)) < 0.2) & (rows > 0.5)
    counts[inside] = max_iter
    smooth[inside] = max_iter
    return counts, smooth


def oklab_lightness(rgb8: np.ndarray) -> np.ndarray:
    """OKLab L of 8-bit sRGB, written out here independently of fractally.picture.colour."""
    c = rgb8.astype(np.float64) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    lms = lin @ np.array(
        [
            [0.4122214708, 0.5363325363, 0.0514459929],
            [0.2119034982, 0.6806995451, 0.1073969566],
            [0.0883024619, 0.2817188376, 0.6299787005],
        ]
    ).T
    return np.cbrt(lms) @ np.array([0.2104542553, 0.7936177850, -0.0040720468])


@pytest.mark.parametrize("name", COLORMAPS)
def test_every_colormap_colours_an_image(name):
    counts, smooth = synthetic()
    img = colourize(counts, smooth, MAX_ITER, name)
    assert img.shape == counts.shape + (3,)
    assert img.dtype == np.uint8
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 100


def test_there_are_at_least_four_colormaps_and_the_default_is_one():
    assert len(COLORMAPS) >= 4
    assert DEFAULT_COLORMAP in COLORMAPS


def test_unknown_colormap_is_refused_naming_the_valid_ones():
    counts, smooth = synthetic(4, 4)
    with pytest.raises(ValueError) as excinfo:
        colourize(counts, smooth, MAX_ITER, "no-such-map")
    assert "no-such-map" in str(excinfo.value)
    for name in COLORMAPS:
        assert name in str(excinfo.value)


def test_unknown_colormap_has_no_lut():
    with pytest.raises(ValueError):
        lut("no-such-map")


@pytest.mark.parametrize("name", COLORMAPS)
def test_colouring_in_bands_equals_colouring_whole(name):
    counts, smooth = synthetic()
    whole = colourize(counts, smooth, MAX_ITER, name)
    cuts = [0, 1, 30, 31, 64, counts.shape[0]]
    bands = [colourize(counts[a:b], smooth[a:b], MAX_ITER, name) for a, b in zip(cuts, cuts[1:])]
    np.testing.assert_array_equal(np.vstack(bands), whole)


@pytest.mark.parametrize("name", COLORMAPS)
def test_inside_points_get_the_inside_colour(name):
    counts, smooth = synthetic()
    img = colourize(counts, smooth, MAX_ITER, name)
    inside = counts == MAX_ITER
    assert (img[inside] == inside_colour(name)).all()


@pytest.mark.parametrize("name", COLORMAPS)
def test_no_escaped_point_gets_the_inside_colour(name):
    smooth = np.linspace(0, MAX_ITER, 200_000, dtype=np.float32).reshape(400, 500)
    counts = np.minimum(np.floor(smooth), MAX_ITER - 1).astype(np.uint32)  # all escaped
    img = colourize(counts, smooth, MAX_ITER, name)
    assert not (img == inside_colour(name)).all(axis=-1).any()


@pytest.mark.parametrize("name", COLORMAPS)
def test_smooth_gradient_shows_no_bands(name):
    # 62 columns per iteration: colouring by integer counts would jump by 14-84 levels
    # at each whole count; smooth colouring through a fine LUT moves a level or two.
    smooth = np.linspace(0, 32, 2000, dtype=np.float32)[None, :].repeat(3, axis=0)
    counts = np.floor(smooth).astype(np.uint32)
    img = colourize(counts, smooth, MAX_ITER, name).astype(np.int16)
    assert np.abs(np.diff(img, axis=1)).max() <= 3


UNIFORM = "ocean"  # the perceptually uniform map
SEQUENTIAL = ("ocean", "fire", "grey")


def test_uniform_map_lightness_rises_monotonically():
    lightness = oklab_lightness(lut(UNIFORM, 256))
    assert (np.diff(lightness) > 0).all()


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_sequential_map_lightness_rises_evenly(name):
    lightness = oklab_lightness(lut(name, 256))
    straight = np.linspace(lightness[0], lightness[-1], len(lightness))
    assert np.abs(lightness - straight).max() < 0.01
    assert lightness[-1] - lightness[0] > 0.6  # spans dark to light


def test_lut_has_the_requested_size():
    table = lut(DEFAULT_COLORMAP, 17)
    assert table.shape == (17, 3)
    assert table.dtype == np.uint8


def test_counts_above_max_iter_count_as_inside():
    counts = np.array([[MAX_ITER + 5]], np.uint32)
    smooth = np.array([[MAX_ITER]], np.float32)
    assert tuple(colourize(counts, smooth, MAX_ITER)[0, 0]) == inside_colour(DEFAULT_COLORMAP)


def test_nan_smooth_value_gets_the_colour_of_zero():
    counts = np.zeros((1, 2), np.uint32)
    smooth = np.array([[np.nan, 0.0]], np.float32)
    img = colourize(counts, smooth, MAX_ITER)
    np.testing.assert_array_equal(img[0, 0], img[0, 1])


def test_mismatched_counts_and_smooth_are_refused():
    counts, smooth = synthetic(8, 8)
    with pytest.raises(ValueError):
        colourize(counts, smooth[:, :7], MAX_ITER)


def numpy_colourize(counts: np.ndarray, smooth: np.ndarray, max_iter: int, name: str) -> np.ndarray:
    """colourize's transfer as whole-array numpy float32 steps: the reference the numba loop must equal."""
    from fractally.picture import colour

    table = colour._table(name)
    n = colour._TABLE_SIZE
    s = np.fmax(smooth, np.float32(0), dtype=np.float32)
    np.minimum(s, np.float32(max_iter), out=s)
    if colour._check_name(name).cyclic:
        s += np.float32(1)
        np.sqrt(s, out=s)
        s *= np.float32(1 / colour._CYCLE)
        s -= np.floor(s)
        s *= np.float32(n)
    else:
        t = s + np.float32(colour._KNEE)
        np.divide(s, t, out=s)
        s *= np.float32((max_iter + colour._KNEE) / max_iter * (n - 1))
        s += np.float32(0.5)
    idx = s.astype(np.intp)
    np.copyto(idx, n, where=counts >= max_iter)
    return np.take(table, idx, axis=0)


@pytest.mark.parametrize("max_iter,dtype", [(1, np.uint8), (255, np.uint8), (1000, np.uint16), (70_000, np.uint32)])
@pytest.mark.parametrize("name", COLORMAPS)
def test_colour_loop_equals_the_numpy_formulation_bit_for_bit(name, max_iter, dtype) -> None:
    rng = np.random.default_rng(max_iter)
    smooth = (rng.random((120, 131)) ** 3 * max_iter * 1.1).astype(np.float32)
    smooth[0, :6] = [np.nan, -1.0, np.inf, -0.0, 0.0, np.float32(max_iter)]
    counts = np.minimum(np.floor(np.nan_to_num(smooth, posinf=max_iter, neginf=0)), max_iter).astype(dtype)
    counts.flags.writeable = smooth.flags.writeable = False  # as tiles decoded from the store come
    np.testing.assert_array_equal(colourize(counts, smooth, max_iter, name),
                                  numpy_colourize(counts, smooth, max_iter, name))


def test_colour_into_fills_png_rows_in_place() -> None:
    counts, smooth = synthetic()
    rows = np.zeros((counts.shape[0], 1 + 3 * counts.shape[1] + 6), np.uint8)  # filter byte, then a neighbour
    colour_into(rows[:, 1 : 1 + 3 * counts.shape[1]], counts, smooth, MAX_ITER)
    np.testing.assert_array_equal(rows[:, 1 : 1 + 3 * counts.shape[1]],
                                  colourize(counts, smooth, MAX_ITER).reshape(counts.shape[0], -1))
    assert not rows[:, 0].any() and not rows[:, -6:].any()  # nothing written outside the view
