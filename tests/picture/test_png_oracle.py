"""A finished multi-tile PNG job, decoded, against an oracle: the image coloured from scratch by
``tests/support/reference.py`` (its own escape-time counts and smooth values, its own OKLab table and transfer,
written from the documented rules) -- not one path of ours compared with another.

Tolerance, and why: the service turns the smooth value into a table position in float32 (the colouring
loop's documented arithmetic), the oracle in float64. Where a pixel's position lies within float32
rounding of the midpoint between two entries the two may pick neighbouring entries, which differ by at
most one step per channel. So: every pixel whose float64 position is farther than ``NEAR`` from such a
midpoint is exactly equal, and the few that are not are within one step in each channel.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fractally.picture.spec import parse_spec
from tests.support.api import wait_until_done
from tests.support.reference import KNEE, TABLE_ENTRIES, reference_colours, reference_escape, reference_lut

#: 150 x 100 pixels in 32-px tiles: 5 x 4 tiles, the last column and row of them partial.
SPEC = {"c": [-0.4, 0.6], "width": 150, "height": 100, "max_iter": 300, "tile_size": 32, "format": "png"}
#: A float32 position (a few roundings of a number below 4096) is within this of the float64 one.
NEAR = 2e-3


def map_position(smooth: np.ndarray, max_iter: int) -> np.ndarray:
    """Where the transfer puts each pixel, in table entries, plus one half: the entry is its floor."""
    s = np.clip(np.nan_to_num(smooth.astype(np.float32).astype(np.float64)), 0.0, max_iter)
    return s * (max_iter + KNEE) / (max_iter * (s + KNEE)) * (TABLE_ENTRIES - 1) + 0.5


@pytest.mark.parametrize("colormap", ["ocean", "fire", "grey"])
def test_a_multi_tile_png_job_has_the_oracles_colours(api_client, colormap: str) -> None:
    spec = {**SPEC, "colormap": colormap}
    submitted = api_client.post("/v1/renders", json=spec)
    assert submitted.status_code == 202, submitted.json
    done = wait_until_done(lambda i: api_client.get(f"/v1/renders/{i}").json, submitted.json["id"])
    assert done["status"] == "done" and done["progress"]["tiles_total"] == 20
    png = api_client.get(f"/v1/renders/{done['id']}/result").data
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)

    counts, smooth = reference_escape(parse_spec(spec))
    expected = reference_colours(counts, smooth.astype(np.float32), spec["max_iter"], colormap).astype(np.int16)
    assert image.shape == expected.shape == (100, 150, 3)
    escaped = counts < spec["max_iter"]
    assert 0 < escaped.sum() < escaped.size  # both kinds of pixel are in the picture
    position = map_position(smooth, spec["max_iter"])
    near_midpoint = escaped & (np.abs(position - np.rint(position)) < NEAR)
    exact = ~near_midpoint
    assert np.array_equal(image[exact], expected[exact])
    assert np.abs(image - expected).max(initial=0) <= 1
    assert np.abs(np.diff(reference_lut(colormap).astype(np.int16), axis=0)).max() <= 1  # neighbours: one step
