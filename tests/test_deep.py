"""Deep views: coordinates of any precision, and perturbation against exact arbitrary-precision counts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fractally.decimals import canonical
from fractally.errors import SpecError
from fractally.spec import MAX_DEEP_ITER, parse_spec, spec_from_query

JULIA = {"c": [-0.8, 0.156]}
DEEP_CENTER = ["-0.7436438870371587047521915061147797782152", "0.1318259042053119704947553125324"]


# --- coordinates of any precision ---

@pytest.mark.parametrize("text,expected", [
    ("0", "0"), ("-0.000", "0"), ("+12.50", "12.5"), ("1e3", "1000"), ("4E-17", "4e-17"), ("0.0000001", "1e-7"),
    ("0.000000123", "1.23e-7"), ("-0.74364388703715870475", "-0.74364388703715870475"), (".5", "0.5"),
    ("1.5e-300", "1.5e-300"), ("100000000000000000000000", "1e23"),
])
def test_canonical_text_is_one_per_value(text, expected):
    assert canonical(Decimal(text)) == expected


def test_float64_views_keep_their_hashes_whether_given_as_numbers_or_text():
    number = parse_spec(JULIA)
    text = parse_spec({"c": ["-0.8", "0.156"], "scale": "3.2", "center": ["0", "-0.0"]})
    assert number == text
    assert text.content_hash() == "789df88d8bf8930a044def761f7803f3"  # the hash of before deep views existed
    assert text.deep is None and "scale" in text.normalized() and text.normalized()["scale"] == 3.2


def test_a_view_below_float64_is_deep_and_keeps_its_digits():
    spec = parse_spec({"fractal": "mandelbrot", "center": DEEP_CENTER, "scale": "4.00E-30", "max_iter": 1000})
    assert spec.deep is not None
    norm = spec.normalized()
    assert norm["center"] == DEEP_CENTER and norm["scale"] == "4e-30"
    assert parse_spec(norm) == spec
    same = parse_spec({"fractal": "mandelbrot", "center": [DEEP_CENTER[0] + "000", DEEP_CENTER[1]], "scale": 4e-30,
                       "max_iter": 1000})
    assert same.content_hash() == spec.content_hash()  # trailing zeros and 4e-30 as a number: the same view
    other = parse_spec({"fractal": "mandelbrot", "center": [DEEP_CENTER[0] + "1", DEEP_CENTER[1]], "scale": "4e-30",
                        "max_iter": 1000})
    assert other.content_hash() != spec.content_hash()  # a digit beyond float64 is another picture


def test_deep_julia_keeps_c_exactly():
    c = ["-0.74543000000000000000000000001", "0.11301"]
    spec = parse_spec({"c": c, "center": ["0.1", "0.2"], "scale": "1e-40", "max_iter": 500})
    assert spec.deep.c == tuple(c) and spec.normalized()["c"] == c


@pytest.mark.parametrize("body,field,words", [
    ({"scale": "1e-1001"}, "scale", "at least 1e-1000"),
    ({"scale": "1e-20", "max_iter": MAX_DEEP_ITER + 1}, "max_iter", f"at most {MAX_DEEP_ITER}"),
    ({"scale": "1e-20", "precision": "float32"}, "precision", "not available for a deep view"),
    ({"scale": "0.00"}, "scale", "greater than 0"),
    ({"scale": "1e-20x"}, "scale", "decimal number"),
    ({"scale": "nan"}, "scale", "decimal number"),
    ({"scale": "1_0"}, "scale", "decimal number"),
    ({"scale": ["1e-20"]}, "scale", "number or a decimal string"),
    ({"center": ["1" * 1200, "0"], "scale": "1e-20"}, "center", "significant digits"),
    ({"center": ["0." + "1" * 1101, "0"], "scale": "1e-20"}, "center", "significant digits"),
    ({"center": ["2e6", "0"], "scale": "1e-20"}, "center", "within"),
    ({"c": ["0.1", "1e999999999"], "scale": "1e-20"}, "c", "decimal number"),
])
def test_bad_deep_inputs_name_the_field(body, field, words):
    with pytest.raises(SpecError) as err:
        parse_spec({"c": [0.1, 0.2], **body})
    assert err.value.field == field and err.value.status == 422
    assert words in err.value.message


def test_query_and_cli_keep_every_digit():
    from fractally.cli import build_parser, spec_from_args

    query = parse_spec(spec_from_query({"fractal": "mandelbrot", "center": ",".join(DEEP_CENTER), "scale": "4e-30",
                                        "max_iter": "1000"}), sync=True)
    args = build_parser().parse_args(["render", "--fractal", "mandelbrot", f"--center={','.join(DEEP_CENTER)}",
                                      "--scale", "4e-30", "--max-iter", "1000", "-o", "x.png"])
    cli = parse_spec(spec_from_args(args, "png"))
    assert query.deep.center == cli.deep.center == tuple(DEEP_CENTER)
    assert query.pixels_hash() == cli.pixels_hash()
