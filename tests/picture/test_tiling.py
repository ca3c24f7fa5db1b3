"""Tiles cover the image exactly and join without seams."""

import numpy as np
import pytest

from fractally.picture.kernel import render_window
from fractally.picture.spec import parse_spec
from fractally.picture.tiling import grid, render_tile_arrays, tile_count, tiles


@pytest.mark.parametrize("width,height,tile_size", [(97, 61, 16), (100, 100, 32), (17, 250, 64), (1, 1, 16)])
def test_tiles_cover_every_pixel_exactly_once(width, height, tile_size):
    spec = parse_spec({"c": [0, 0.8], "width": width, "height": height, "tile_size": tile_size})
    cover = np.zeros((height, width), dtype=int)
    for t in tiles(spec):
        assert 1 <= t.width <= tile_size and 1 <= t.height <= tile_size
        cover[t.y0:t.y0 + t.height, t.x0:t.x0 + t.width] += 1
    assert np.all(cover == 1)
    assert tile_count(spec) == grid(spec)[0] * grid(spec)[1]


@pytest.mark.parametrize("width,height,tile_size", [(203, 117, 16), (129, 257, 64), (333, 77, 50)])
def test_tiles_join_without_seams(width, height, tile_size):
    spec = parse_spec({"c": [-0.8, 0.156], "width": width, "height": height, "tile_size": tile_size,
                       "max_iter": 300, "center": [0.1, -0.05], "scale": 2.7})
    whole_counts, whole_smooth = render_window(spec, 0, 0, height, width)
    counts = np.zeros_like(whole_counts)
    smooth = np.zeros_like(whole_smooth)
    for t in tiles(spec):
        c, s = render_tile_arrays(spec, t)
        counts[t.y0:t.y0 + t.height, t.x0:t.x0 + t.width] = c
        smooth[t.y0:t.y0 + t.height, t.x0:t.x0 + t.width] = s
    assert np.array_equal(counts, whole_counts)
    assert np.array_equal(smooth.view(np.uint32), whole_smooth.view(np.uint32))  # bit for bit


def test_tile_index_outside_grid_is_rejected():
    from fractally.picture.tiling import tile

    spec = parse_spec({"c": [0, 0], "width": 32, "height": 32, "tile_size": 16})
    with pytest.raises(IndexError):
        tile(spec, 4)
