"""The kernel follows API.md's iteration rule bit for bit."""

import math
import random

import numpy as np
import pytest

from fractally.kernel import render_window
from fractally.spec import parse_spec
from tests.reference import reference_counts


def random_spec(rng: random.Random):
    fractal = rng.choice(["julia", "mandelbrot"])
    spec = {
        "fractal": fractal,
        "center": [rng.uniform(-1.5, 1.0), rng.uniform(-1.0, 1.0)],
        "scale": 10 ** rng.uniform(-4, 0.6),
        "width": rng.randint(1, 61),
        "height": rng.randint(1, 47),
        "max_iter": rng.randint(1, 400),
        "escape_radius": rng.choice([2, 2.5, 4, 100]),
        "format": "msgpack",
    }
    if fractal == "julia":
        angle = rng.uniform(0, 2 * math.pi)
        spec["c"] = [0.7885 * math.cos(angle), 0.7885 * math.sin(angle)]
    return parse_spec(spec)


@pytest.mark.parametrize("seed", range(40))
def test_counts_equal_numpy_reference_on_random_specs(seed):
    spec = random_spec(random.Random(seed))
    counts, _ = render_window(spec, 0, 0, spec.height, spec.width)
    expected = reference_counts(spec)
    assert counts.dtype == np.uint32
    assert np.array_equal(counts, expected), f"{(counts != expected).sum()} pixels differ for {spec}"


def test_counts_equal_reference_on_the_classic_julia():
    spec = parse_spec({"c": [-0.8, 0.156], "width": 160, "height": 90, "max_iter": 300, "format": "msgpack"})
    counts, _ = render_window(spec, 0, 0, spec.height, spec.width)
    assert np.array_equal(counts, reference_counts(spec))
    assert counts.min() < 5 and counts.max() == 300  # both escaping and inside points are present


def test_point_outside_radius_counts_zero():
    # the corner pixels of a wide view start with |z0| > R
    spec = parse_spec({"c": [0, 0], "width": 3, "height": 3, "scale": 12, "format": "msgpack"})
    counts, smooth = render_window(spec, 0, 0, 3, 3)
    assert counts[0, 0] == 0 and counts[2, 2] == 0
    assert smooth[0, 0] == 0.0


def test_point_that_never_escapes_counts_max_iter():
    spec = parse_spec({"fractal": "mandelbrot", "width": 1, "height": 1, "scale": 1e-3,
                       "center": [-0.1, 0.0], "max_iter": 77, "format": "msgpack"})
    counts, smooth = render_window(spec, 0, 0, 1, 1)
    assert counts[0, 0] == 77
    assert smooth[0, 0] == 77.0


def test_smooth_value_lies_within_one_of_the_count_for_escaped_points():
    spec = parse_spec({"c": [-0.8, 0.156], "width": 64, "height": 48, "max_iter": 200, "format": "msgpack"})
    counts, smooth = render_window(spec, 0, 0, 48, 64)
    escaped = (counts < 200) & (counts > 0)
    assert escaped.sum() > 100
    assert np.all(smooth[escaped] >= counts[escaped].astype(np.float32) - 1 - 1e-4)
    assert np.all(smooth[escaped] <= counts[escaped].astype(np.float32) + 1 + 1e-4)


def test_window_equals_same_pixels_of_whole_image():
    spec = parse_spec({"c": [0.285, 0.01], "width": 50, "height": 40, "max_iter": 150, "format": "msgpack"})
    whole_counts, whole_smooth = render_window(spec, 0, 0, 40, 50)
    part_counts, part_smooth = render_window(spec, 13, 7, 20, 31)
    assert np.array_equal(part_counts, whole_counts[13:33, 7:38])
    assert np.array_equal(part_smooth, whole_smooth[13:33, 7:38])
