"""The render spec: defaults, limits, clear errors, a stable hash."""

import math

import pytest

from fractally.picture import spec as specmod
from fractally.picture.colour import COLORMAPS, DEFAULT_COLORMAP
from fractally.errors import SpecError
from fractally.picture.spec import parse_spec, spec_from_query

JULIA = {"c": [-0.8, 0.156]}


def test_defaults_come_from_api_md():
    s = parse_spec(JULIA)
    assert (s.fractal, s.center, s.scale, s.width, s.height) == ("julia", (0.0, 0.0), 3.2, 1024, 768)
    assert (s.max_iter, s.escape_radius, s.tile_size, s.format) == (256, 2.0, 256, "png")
    assert s.colormap == DEFAULT_COLORMAP


def test_hash_ignores_key_order_int_vs_float_and_omitted_defaults():
    a = parse_spec({"c": [-0.8, 0.156], "width": 1024, "scale": 3.2})
    b = parse_spec({"scale": 3.2, "width": 1024.0, "center": [0, 0], "c": [-0.8, 0.156], "max_iter": 256,
                    "fractal": "julia", "escape_radius": 2, "format": "png", "colormap": DEFAULT_COLORMAP})
    assert a.content_hash() == b.content_hash()


def test_hash_changes_with_the_picture():
    a = parse_spec(JULIA)
    assert a.content_hash() != parse_spec({**JULIA, "max_iter": 257}).content_hash()
    assert a.content_hash() != parse_spec({"c": [-0.8, 0.157]}).content_hash()


def test_pixels_hash_is_shared_by_png_and_msgpack_of_one_picture():
    png = parse_spec({**JULIA, "format": "png", "colormap": COLORMAPS[-1]})
    mp = parse_spec({**JULIA, "format": "msgpack"})
    assert png.pixels_hash() == mp.pixels_hash()
    assert png.content_hash() != mp.content_hash()


def test_mandelbrot_ignores_c():
    assert parse_spec({"fractal": "mandelbrot", "c": [1, 1]}).content_hash() == \
        parse_spec({"fractal": "mandelbrot"}).content_hash()


def test_normalized_form_parses_back_to_the_same_spec():
    s = parse_spec({**JULIA, "width": 640, "height": 480, "colormap": COLORMAPS[0]})
    assert parse_spec(s.normalized()) == s


@pytest.mark.parametrize("body,field", [
    ({}, "c"),
    ({"c": [0, math.nan]}, "c"),
    ({"c": [0, math.inf]}, "c"),
    ({"c": [True, 0]}, "c"),
    ({"c": "0,0"}, "c"),
    ({"c": [0, 0, 0]}, "c"),
    ({**JULIA, "width": 0}, "width"),
    ({**JULIA, "width": -5}, "width"),
    ({**JULIA, "width": 10.5}, "width"),
    ({**JULIA, "width": True}, "width"),
    ({**JULIA, "width": "100"}, "width"),
    ({**JULIA, "width": 10**12}, "width"),
    ({**JULIA, "width": 65536, "height": 65536}, "width"),
    ({**JULIA, "max_iter": 0}, "max_iter"),
    ({**JULIA, "max_iter": 10**9}, "max_iter"),
    ({**JULIA, "max_iter": math.nan}, "max_iter"),
    ({**JULIA, "scale": 0}, "scale"),
    ({**JULIA, "scale": -1}, "scale"),
    ({**JULIA, "scale": math.inf}, "scale"),
    ({**JULIA, "scale": "1e-1001"}, "scale"),  # below the deepest view (1e-300 is a deep view)
    ({**JULIA, "escape_radius": 1.5}, "escape_radius"),
    ({**JULIA, "tile_size": 8}, "tile_size"),
    ({**JULIA, "tile_size": 100000}, "tile_size"),
    ({**JULIA, "width": 65536, "height": 16384, "tile_size": 16}, "tile_size"),
    ({**JULIA, "format": "jpeg"}, "format"),
    ({**JULIA, "format": "msgpack", "width": 32768, "height": 32768}, "format"),
    ({**JULIA, "colormap": "no-such-map"}, "colormap"),
    ({**JULIA, "fractal": "burning-ship"}, "fractal"),
    ({**JULIA, "center": [1e9, 0]}, "center"),
    ({**JULIA, "bogus": 1}, "bogus"),
    ({**JULIA, "scale": 10**400}, "scale"),
    ({**JULIA, "colormap": ""}, "colormap"),
    ({**JULIA, "colormap": False}, "colormap"),
])
def test_bad_fields_are_rejected_with_the_field_named(body, field):
    with pytest.raises(SpecError) as err:
        parse_spec(body)
    assert err.value.field == field
    assert err.value.status == 422
    assert len(err.value.message) > 10


@pytest.mark.parametrize("body", [None, [], "x", 3])
def test_non_object_spec_is_rejected(body):
    with pytest.raises(SpecError):
        parse_spec(body)


def test_sync_limits_are_tighter_than_job_limits():
    big = {**JULIA, "width": 4096, "height": 4096}
    parse_spec(big)
    with pytest.raises(SpecError) as err:
        parse_spec(big, sync=True)
    assert err.value.field == "width"
    with pytest.raises(SpecError) as err:
        parse_spec({**JULIA, "width": 1024, "height": 1024, "max_iter": specmod.MAX_ITER}, sync=True)
    assert err.value.field == "max_iter"


def test_query_parameters_become_a_spec():
    s = parse_spec(spec_from_query({"c": "-0.8,0.156", "center": "0.1,-0.2", "width": "64", "height": "48",
                                    "max_iter": "100", "scale": "2.5", "format": "msgpack"}))
    assert s.c == (-0.8, 0.156) and s.center == (0.1, -0.2) and s.scale == 2.5
    assert (s.width, s.height, s.max_iter, s.format) == (64, 48, 100, "msgpack")


@pytest.mark.parametrize("params,field", [
    ({"c": "1"}, "c"), ({"c": "a,b"}, "c"), ({"width": "1e3x"}, "width"), ({"scale": "nan"}, "scale"),
    ({"zoom": "3"}, "zoom"), ({"c": "0," + "1" * 1200}, "c"), ({"width": "1_000"}, "width"),
    ({"scale": "1_0.5"}, "scale"), ({"scale": "inf"}, "scale"), ({"max_iter": "0x10"}, "max_iter"),
])
def test_bad_query_parameters_name_the_field(params, field):
    with pytest.raises(SpecError) as err:
        spec_from_query(params)
    assert err.value.field == field


# --- precision: the float32 opt-in ---

def test_default_precision_leaves_the_hashes_unchanged():
    # the hashes this spec had before the precision field existed: job ids and cached tiles stay valid
    for spec in (JULIA, {**JULIA, "precision": "float64"}, {**JULIA, "precision": None}):
        s = parse_spec(spec)
        assert s.precision == "float64" and "precision" not in s.normalized()
        assert s.content_hash() == "789df88d8bf8930a044def761f7803f3"
        assert s.pixels_hash() == "5a47841850a734b94d93e92702582c14"


def test_float32_changes_both_hashes():
    exact, fast = parse_spec(JULIA), parse_spec({**JULIA, "precision": "float32"})
    assert fast.normalized()["precision"] == "float32"
    assert fast.content_hash() != exact.content_hash()
    assert fast.pixels_hash() != exact.pixels_hash()  # its tiles hold other counts


def test_float32_normalized_form_parses_back_to_the_same_spec():
    s = parse_spec({**JULIA, "precision": "float32", "format": "msgpack"})
    assert parse_spec(s.normalized()) == s


def test_float32_is_rejected_for_a_deep_zoom_naming_precision():
    deep = {"fractal": "mandelbrot", "center": [-0.7435, 0.1314], "scale": 1e-5, "width": 1024, "height": 768}
    parse_spec(deep)  # fine in float64
    with pytest.raises(SpecError) as err:
        parse_spec({**deep, "precision": "float32"})
    assert err.value.field == "precision" and err.value.status == 422
    assert "float64" in err.value.message and "scale of at least" in err.value.message


def test_float32_bound_is_a_sixteenth_of_a_pixel_of_the_largest_coordinate():
    # scale / width >= 2**-20 * max(1, |center.x| + scale, |center.y| + scale * height / width, |c|)
    width, largest = 1024, 1.0
    least = 2.0**-20 * largest * width
    view = {**JULIA, "c": [0.3, -0.5], "width": width, "height": width, "precision": "float32"}
    assert parse_spec({**view, "scale": least}).precision == "float32"
    with pytest.raises(SpecError):
        parse_spec({**view, "scale": least * 0.999})
    with pytest.raises(SpecError):  # a larger |c| raises the bound
        parse_spec({**view, "c": [4.0, 0.0], "scale": 2 * least})


def test_float32_is_rejected_when_the_escape_radius_does_not_fit_a_float32():
    assert parse_spec({**JULIA, "precision": "float32", "escape_radius": 1e19}).precision == "float32"
    with pytest.raises(SpecError) as err:
        parse_spec({**JULIA, "precision": "float32", "escape_radius": 1e20})
    assert err.value.field == "precision" and "escape_radius" in err.value.message


@pytest.mark.parametrize("value", ["float16", "double", "", 32, True])
def test_unknown_precision_is_rejected_with_the_choices(value):
    with pytest.raises(SpecError) as err:
        parse_spec({**JULIA, "precision": value})
    assert err.value.field == "precision" and "float64, float32" in err.value.message


def test_precision_query_parameter_becomes_the_spec_field():
    assert parse_spec(spec_from_query({"c": "-0.8,0.156", "precision": "float32"})).precision == "float32"
