"""The kernel follows docs/api.md's iteration rule bit for bit."""

import math
import random
import re

import numpy as np
import pytest

from fractally.picture.kernel import render_window
from fractally.picture.spec import parse_spec
from tests.support.machine_code import compiled_asm, fused_instructions
from tests.support.reference import reference_counts


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


# --- the SIMD kernel's own guarantees (issue 6) -------------------------------------------------


def reference_final_z(spec):
    """Counts and the final |z|² (z frozen at escape) by the rule in numpy, for smooth-value checks."""
    w, h = spec.width, spec.height
    px = spec.center[0] + ((np.arange(w) + 0.5 - w / 2) * spec.scale) / w
    py = spec.center[1] - ((np.arange(h) + 0.5 - h / 2) * spec.scale) / w
    x, y = np.meshgrid(px, py)
    if spec.fractal == "julia":
        cx, cy = np.full_like(x, spec.c[0]), np.full_like(y, spec.c[1])
    else:
        cx, cy, x, y = x, y, np.zeros_like(x), np.zeros_like(y)
    r2 = spec.escape_radius * spec.escape_radius
    n = np.zeros((h, w), dtype=np.int64)
    for _ in range(spec.max_iter):
        go = (x * x + y * y) <= r2
        if not go.any():
            break
        x, y = np.where(go, (x * x - y * y) + cx, x), np.where(go, (2 * x) * y + cy, y)
        n += go
    with np.errstate(over="ignore"):
        return n, x * x + y * y


def libm_smooth(spec, n, mod2):
    """API-style smooth value with the C library's logarithms, in float64."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v = n + 1.0 - np.log2((0.5 * np.log(mod2)) / math.log(spec.escape_radius))
    v = np.clip(v, 0.0, spec.max_iter)
    return np.where(n >= spec.max_iter, float(spec.max_iter), v)


@pytest.mark.parametrize("fractal,radius",
                         [("julia", 2.0), ("mandelbrot", 2.0), ("julia", 100.0), ("mandelbrot", 1e10)])
def test_smooth_values_match_the_libm_formula_to_one_float32_step(fractal, radius):
    spec = parse_spec({"fractal": fractal, "c": [-0.8, 0.156], "center": [-0.5 if fractal == "mandelbrot" else 0, 0],
                       "width": 96, "height": 64, "max_iter": 500, "escape_radius": radius, "format": "msgpack"})
    counts, smooth = render_window(spec, 0, 0, 64, 96)
    n, mod2 = reference_final_z(spec)
    assert np.array_equal(counts, n)
    expected = libm_smooth(spec, n, mod2)
    ulp = np.spacing(expected.astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(smooth - expected) <= np.maximum(ulp, 1e-6)), "smooth strays from n + 1 - log2(log|z| / log R)"
    assert (smooth == expected.astype(np.float32)).mean() > 0.99  # mostly the very same float32


def test_log2_is_accurate_and_continuous_across_its_seams():
    from fractally.picture.kernel import _TWO52_BIAS, _log2_mantissa, _log2_split

    rng = np.random.default_rng(6)
    seams = np.ldexp(1.0, np.arange(-60, 61)).repeat(2) * np.tile([1.0, math.sqrt(2.0)], 121)
    around = np.concatenate([np.nextafter(seams, 0), seams, np.nextafter(seams, np.inf)])
    values = np.concatenate([around, np.exp(rng.uniform(-700, 700, 2000)), rng.uniform(1, 20, 2000)])
    exponent, mantissa = np.empty_like(values), np.empty_like(values)
    _log2_split(values.view(np.uint64), exponent.view(np.uint64), mantissa.view(np.uint64))
    ours = np.array([(e - _TWO52_BIAS) + _log2_mantissa(f) for e, f in zip(exponent, mantissa)])
    assert np.max(np.abs(ours - np.log2(values))) < 1e-10
    k = len(seams)  # just below, at, just above every seam: no jump beyond the accuracy
    assert np.max(np.abs(ours[:k] - ours[k:2 * k])) < 2e-10
    assert np.max(np.abs(ours[2 * k:3 * k] - ours[k:2 * k])) < 2e-10


def test_escaped_points_with_huge_radius_keep_finite_smooth_values():
    # R = 1e100: |z|² of an escaped point may overflow to inf; its smooth value stays finite and in range
    spec = parse_spec({"fractal": "mandelbrot", "center": [-0.5, 0], "width": 40, "height": 30, "max_iter": 50,
                       "escape_radius": 1e100, "format": "msgpack"})
    counts, smooth = render_window(spec, 0, 0, 30, 40)
    assert np.array_equal(counts, reference_counts(spec))
    assert np.all(np.isfinite(smooth)) and smooth.min() >= 0 and smooth.max() <= 50


def test_images_spanning_several_strips_equal_the_reference():
    # 260 columns (not a multiple of the 4 lanes) x 520 rows: three scratch strips, vectors refilled across rows
    from fractally.picture.kernel import STRIP_PIXELS

    spec = parse_spec({"fractal": "mandelbrot", "center": [-0.74, 0.13], "scale": 0.05, "width": 260, "height": 520,
                       "max_iter": 60, "format": "msgpack"})
    assert spec.width * spec.height > 2 * STRIP_PIXELS
    counts, _ = render_window(spec, 0, 0, spec.height, spec.width)
    assert np.array_equal(counts, reference_counts(spec))


def test_float32_kernel_is_close_on_a_safe_view():
    from fractally.picture.kernel import escape_time_float32

    spec = parse_spec({"c": [-0.8, 0.156], "width": 160, "height": 90, "max_iter": 300, "format": "msgpack"})
    counts = np.empty((90, 160), np.uint32)
    smooth = np.empty((90, 160), np.float32)
    escape_time_float32(True, -0.8, 0.156, 0.0, 0.0, spec.scale, 160, 90, 300, 2.0, 0, 0, counts, smooth)
    exact = reference_counts(spec)
    assert (counts == exact).mean() > 0.9  # differences only where orbits are chaotic
    assert np.all(np.isfinite(smooth)) and smooth.max() <= 300


CLASSIC = {"c": [-0.8, 0.156], "width": 160, "height": 120}  # the classic julia overview, default max_iter


def render_both(view: dict):
    """The counts and smooth values of ``view`` in float64 and in the float32 opt-in."""
    exact = parse_spec(view)
    fast = parse_spec({**view, "precision": "float32"})
    return render_window(exact, 0, 0, exact.height, exact.width), render_window(fast, 0, 0, fast.height, fast.width)


def test_float32_precision_changes_under_a_tenth_of_the_counts_of_the_classic_view():
    (exact, _), (fast, _) = render_both(CLASSIC)
    differ = (exact != fast).mean()
    assert 0 < differ < 0.10  # it is float32 (some orbits differ), but only on the chaotic boundary


def test_float32_precision_looks_the_same_as_float64_on_the_classic_view():
    from fractally.picture.colour import colourize

    spec = parse_spec(CLASSIC)
    (c64, s64), (c32, s32) = render_both(CLASSIC)
    exact = colourize(c64, s64, spec.max_iter, spec.colormap).astype(np.int16)
    fast = colourize(c32, s32, spec.max_iter, spec.colormap).astype(np.int16)
    diff = np.abs(exact - fast)
    assert diff.mean() < 2  # of 255: on average the same colour
    assert (diff.max(axis=-1) > 8).mean() < 0.02  # and few pixels visibly different


def test_float32_tiles_join_without_seams():
    spec = parse_spec({**CLASSIC, "width": 50, "height": 40, "precision": "float32", "format": "msgpack"})
    whole_counts, whole_smooth = render_window(spec, 0, 0, 40, 50)
    part_counts, part_smooth = render_window(spec, 13, 7, 20, 31)
    assert np.array_equal(part_counts, whole_counts[13:33, 7:38])
    assert np.array_equal(part_smooth, whole_smooth[13:33, 7:38])


def test_float32_precision_agrees_with_float64_on_a_mandelbrot():
    view = {"fractal": "mandelbrot", "center": [-0.5, 0], "scale": 3, "width": 90, "height": 60, "max_iter": 100}
    (exact, _), (fast, _) = render_both(view)
    assert (exact == fast).mean() > 0.97


def test_float32_kernel_guards_the_escape_radius_bound_the_spec_enforces():
    from fractally.picture import kernel, spec

    assert kernel.FLOAT32_MAX_ESCAPE_RADIUS == spec.FLOAT32_MAX_ESCAPE_RADIUS
    counts, smooth = np.empty((2, 2), np.uint32), np.empty((2, 2), np.float32)
    with pytest.raises(ValueError):
        kernel.escape_time_float32(True, 0.0, 0.0, 0.0, 0.0, 3.2, 2, 2, 10, 1e20, 0, 0, counts, smooth)


def test_no_fused_multiply_add_in_the_machine_code(tmp_path):
    """docs/api.md forbids FMA: compile the kernels afresh and read their assembly."""
    asm = compiled_asm(
        "import numpy as np\n"
        "from fractally.picture import kernel as k\n"
        "c = np.empty((5, 7), np.uint32); s = np.empty((5, 7), np.float32)\n"
        "for f in (k.escape_time, k.escape_time_float32):\n"
        "    f(True, -0.8, 0.156, 0.0, 0.0, 3.2, 7, 5, 50, 2.0, 0, 0, c, s)\n"
        "    f(False, 0.0, 0.0, -0.5, 0.0, 3.2, 7, 5, 50, 2.0, 0, 0, c, s)\n"
        "for name in ('escape_time', 'escape_time_float32', '_escape_time_strips', '_escape_time_strips32',\n"
        "             '_iterate_strip', '_iterate_strip32', '_finish_strip', '_pixel_centres'):\n"
        "    for sig, asm in getattr(k, name).inspect_asm().items():\n"
        "        print('#### ' + name + ' ' + str(sig)); print(asm)\n", tmp_path)
    assert asm.count("#### _iterate_strip (") == 1 and asm.count("#### _iterate_strip32 (") == 1
    assert asm.count("#### _finish_strip") >= 1
    fused = fused_instructions(asm)
    assert not fused, f"FMA instructions in the kernel: {fused}"
    hot32 = asm.split("#### _iterate_strip32 (")[1].split("####")[0]  # float32: eight lanes, a 256-bit register
    assert re.search(r"\bvmulps\s+%[yz]mm", hot32), "the float32 iteration does not use 8-lane vectors"
    hot = asm.split("#### _iterate_strip (")[1].split("####")[0]  # float64: packed (SIMD) multiplies
    assert re.search(r"\bv?mulpd\s+%[xyz]mm", hot), "the iteration is not vectorised"
