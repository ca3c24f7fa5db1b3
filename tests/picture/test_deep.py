"""Deep views: coordinates of any precision, and perturbation against exact arbitrary-precision counts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fractally.picture.decimals import canonical
from fractally.errors import SpecError
from fractally.picture.spec import MAX_DEEP_ITER, parse_spec, spec_from_query

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


# --- perturbation against exact arbitrary-precision counts ---

DEPTHS = ("1e-20", "1e-50", "1e-100", "1e-300", "1e-400")
W, H = 40, 30


def _view(fractal: str, depth: str, julia_point: tuple[str, str]) -> dict:
    """A view at ``depth`` with detail at every depth: beside the Misiurewicz point c = i (mandelbrot,
    and the julia set of c = i at z = i), or at a repelling point of the julia set of -0.8+0.156i."""
    exponent = int(depth.split("e-")[1])
    nudge = f"3.1e-{exponent + 2}"  # off the exact point, by a few pixels
    if fractal == "mandelbrot":
        return {"fractal": "mandelbrot", "center": [nudge, f"1.{'0' * (exponent + 1)}7"], "scale": depth}
    if fractal == "julia-i":
        return {"fractal": "julia", "c": ["0", "1"], "center": [nudge, "1"], "scale": depth}
    return {"fractal": "julia", "c": ["-0.8", "0.156"], "center": list(julia_point), "scale": depth}


@pytest.mark.parametrize("fractal", ["mandelbrot", "julia-i", "julia"])
@pytest.mark.parametrize("depth", DEPTHS)
def test_deep_counts_agree_with_exact_arithmetic(fractal, depth, julia_repelling_point, exact_count):
    import numpy as np

    from fractally.picture.tiling import render_tile_arrays, tile

    spec = parse_spec({**_view(fractal, depth, julia_repelling_point), "width": W, "height": H,
                       "max_iter": 5000, "tile_size": 64})
    assert spec.deep is not None
    counts, smooth = render_tile_arrays(spec, tile(spec, 0))
    rng = np.random.default_rng(int(depth.split("e-")[1]))
    pixels = [(int(rng.integers(H)), int(rng.integers(W))) for _ in range(16)]
    exact = [exact_count(spec, i, j) for i, j in pixels]
    agree = sum(int(counts[i, j]) == e for (i, j), e in zip(pixels, exact))
    assert agree >= 15, (list(zip(pixels, exact)), [int(counts[i, j]) for i, j in pixels])
    assert len(set(exact)) > 1  # a view with detail, not a flat field
    assert np.all(np.isfinite(smooth)) and np.all(smooth >= 0)


@pytest.mark.parametrize("fractal", ["mandelbrot", "julia"])
@pytest.mark.parametrize("depth", ["1e-30", "1e-400"])
def test_deep_tiles_join_without_seams(fractal, depth, julia_repelling_point):
    _assert_tiles_join_without_seams({**_view(fractal, depth, julia_repelling_point), "width": 48, "height": 40,
                                      "max_iter": 3000})


def _assert_tiles_join_without_seams(view: dict) -> None:
    """The view in 16² tiles gives the bytes of the view in one tile, counts and smooth values alike."""
    import numpy as np

    from fractally.picture.tiling import render_tile_arrays, tile, tile_count

    whole_spec = parse_spec({**view, "tile_size": 64})
    tiled_spec = parse_spec({**view, "tile_size": 16})
    whole = render_tile_arrays(whole_spec, tile(whole_spec, 0))
    counts = np.zeros((view["height"], view["width"]), np.uint32)
    smooth = np.zeros((view["height"], view["width"]), np.float32)
    for index in range(tile_count(tiled_spec)):
        t = tile(tiled_spec, index)
        c, s = render_tile_arrays(tiled_spec, t)
        counts[t.y0:t.y0 + t.height, t.x0:t.x0 + t.width] = c
        smooth[t.y0:t.y0 + t.height, t.x0:t.x0 + t.width] = s
    assert counts.tobytes() == whole[0].tobytes() and smooth.tobytes() == whole[1].tobytes()


def test_the_orbit_is_the_same_bytes_wherever_it_is_computed():
    from fractally.picture import orbit

    spec = parse_spec({**_view("julia", "1e-300", ("0.1", "0.2")), "c": ["-0.8", "0.156"], "max_iter": 2000})
    primary, critical = orbit.inputs_for(spec)
    assert orbit.compute(primary).to_bytes() == orbit.compute(primary).to_bytes()
    assert primary.key() != critical.key() and critical.start == ("0", "0")
    again = orbit.Orbit.from_bytes(orbit.compute(critical).to_bytes())
    assert again.to_bytes() == orbit.compute(critical).to_bytes()


# --- through the service: one orbit per job, in the store; the API's answers ---

DEEP_JOB = {"fractal": "mandelbrot", "center": ["3.1e-42", "1.00000000000000000000000000000000000000007"],
            "scale": "1e-40", "width": 48, "height": 32, "max_iter": 2000, "tile_size": 16, "format": "msgpack"}


def test_a_deep_job_computes_its_orbit_once_into_the_store(api_client, api_store, monkeypatch):
    from fractally.picture import orbit
    from fractally.picture.codec import decode_msgpack
    from fractally.picture.tiling import render_tile_arrays, tile
    from tests.support.api import wait_until_done

    computed = []
    real = orbit.compute
    monkeypatch.setattr(orbit, "compute", lambda inputs: computed.append(inputs) or real(inputs))
    orbit._cache.clear()
    response = api_client.post("/v1/renders", json=DEEP_JOB)
    assert response.status_code == 202, response.json
    body = wait_until_done(lambda i: api_client.get(f"/v1/renders/{i}").json, response.json["id"])
    assert body["status"] == "done" and body["spec"]["center"] == DEEP_JOB["center"]
    assert len(computed) == 1  # one reference for the job's six tiles
    assert [k for k in api_store.list("orbits/")] == [orbit.inputs_for(parse_spec(DEEP_JOB))[0].key()]
    counts = decode_msgpack(api_client.get(f"/v1/renders/{body['id']}/result").data).counts
    spec = parse_spec({**DEEP_JOB, "tile_size": 64})
    assert counts.tobytes() == render_tile_arrays(spec, tile(spec, 0))[0].tobytes()  # same bits as one tile


def test_a_deep_explorer_tile_keeps_its_orbit_out_of_the_store(api_client, api_store, monkeypatch):
    """A job of one tile (an explorer tile past zoom 40) computes its orbit where it renders and stores
    only the tile and its PNG: no other tile would read the orbit."""
    from fractally.jobs import xyz
    from fractally.picture import orbit

    computed = []
    real = orbit.compute
    monkeypatch.setattr(orbit, "compute", lambda inputs: computed.append(inputs) or real(inputs))
    orbit._cache.clear()
    z, x, y = 60, 2**59, 2**58  # its corner at c = i, 4 / 2^60 wide
    response = api_client.get(f"/v1/tiles/mandelbrot/{z}/{x}/{y}.png")
    assert response.status_code == 200 and response.data.startswith(b"\x89PNG")
    assert xyz.xyz_spec("mandelbrot", z, x, y).deep is not None and len(computed) == 1
    assert list(api_store.list("orbits/")) == []
    assert len(list(api_store.list("tiles/"))) == 1 and len(list(api_store.list(xyz.PNG_PREFIX))) == 1


def test_sync_render_of_a_deep_view(api_client):
    from fractally.picture.codec import decode_msgpack

    query = "&".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in DEEP_JOB.items()
                     if k not in ("tile_size", "format"))
    response = api_client.get(f"/v1/render.msgpack?{query}")
    assert response.status_code == 200, response.json
    result = decode_msgpack(response.data)
    assert result.spec["scale"] == "1e-40" and len(set(result.counts.ravel().tolist())) > 5


@pytest.mark.parametrize("change,field", [
    ({"scale": "1e-2000"}, "scale"), ({"max_iter": MAX_DEEP_ITER + 1}, "max_iter"),
    ({"precision": "float32"}, "precision"), ({"center": ["0.1.2", "0"]}, "center"),
])
def test_bad_deep_requests_get_a_422_naming_the_field(api_client, api_store, change, field):
    response = api_client.post("/v1/renders", json={**DEEP_JOB, **change})
    assert response.status_code == 422
    assert response.json["error"]["field"] == field
    assert api_store.list("") == []


def test_no_fused_multiply_add_in_the_deep_kernel(tmp_path):
    """Same bits everywhere needs no FMA in the perturbation loop, the BLA table or the period's ball either:
    compile afresh, read the assembly."""
    from tests.support.machine_code import compiled_asm, fused_instructions

    asm = compiled_asm(
        "from fractally.picture.spec import parse_spec\n"
        "from fractally.picture.tiling import render_tile_arrays, tile\n"
        "from fractally.picture import bla, period, perturb as p\n"
        "s = parse_spec({'fractal': 'mandelbrot', 'center': ['0', '1'], 'scale': '1e-400', 'width': 8, 'height': 8})\n"
        "render_tile_arrays(s, tile(s, 0))\n"
        "for module, name in ((p, 'escape_time_deep'), (p, '_pixel'), (bla, '_build'), (bla, '_merge_level'),\n"
        "                     (period, '_cut_length')):\n"
        "    for sig, asm in getattr(module, name).inspect_asm().items():\n"
        "        print('#### ' + name); print(asm)\n", tmp_path)
    assert asm.count("#### escape_time_deep") == 1 and "mulsd" in asm
    assert asm.count("#### _build") == 1 and asm.count("#### _merge_level") == 1  # the BLA table
    assert asm.count("#### _cut_length") == 1  # the ball that finds a nucleus's period
    fused = fused_instructions(asm)
    assert not fused, f"FMA instructions in the deep kernel: {fused}"


@pytest.mark.parametrize("where,max_iter,least_median", [("minibrot", 12_000, 1000), ("plain minibrot", 4000, 137)])
def test_beside_a_minibrot_counts_agree_with_exact_arithmetic(where, max_iter, least_median, deep_minibrot,
                                                               exact_count):
    """Orbits that pass near 0 every period: within 1e-599 beside the period-797 minibrot (the
    extended-exponent steps must keep δc, counts in the thousands); beside the period-137 one every pixel
    rebases at each period (the reference is cut there)."""
    import numpy as np

    from fractally.picture.tiling import render_tile_arrays, tile

    spec = parse_spec({**_minibrot_view(where, deep_minibrot), "width": 32, "height": 24, "max_iter": max_iter,
                       "tile_size": 32})
    counts, _ = render_tile_arrays(spec, tile(spec, 0))
    assert deep_minibrot["period"] == 797 and least_median < np.median(counts)
    pixels = [(0, 0), (3, 29), (12, 16), (20, 5), (23, 31), (8, 9), (17, 22), (6, 14)]
    exact = [exact_count(spec, i, j) for i, j in pixels]
    agree = sum(int(counts[i, j]) == e for (i, j), e in zip(pixels, exact))
    assert agree >= 7, (exact, [int(counts[i, j]) for i, j in pixels])
    assert len(set(exact)) > 3


@pytest.mark.parametrize("view", [
    {"fractal": "mandelbrot", "center": ["3.1e-102", "1"], "scale": "1e-100"},
    {"fractal": "julia", "c": ["0", "1"], "center": ["3.1e-42", "1"], "scale": "1e-40"},
    "plain minibrot",
])
def test_pixels_in_flight_give_the_bits_of_one_pixel_at_a_time(view):
    """The plain loop steps four pixels at once (``_plain_strip``); each must get ``_pixel``'s bits
    (beside the minibrot of 1e-102 with BLA jumps every period)."""
    import numpy as np

    from fractally.picture import bla, period, perturb
    from fractally.picture.skip import skip_for
    from fractally.picture.tiling import render_tile_arrays, tile

    view = _plain_minibrot() if view == "plain minibrot" else view
    spec = parse_spec({**view, "width": 37, "height": 23, "max_iter": 2000, "tile_size": 64})
    counts, _ = render_tile_arrays(spec, tile(spec, 0))
    ref, crit = period.view_orbits(spec)
    skip = skip_for(spec, ref)
    table = bla.table_for(spec, ref).arrays()
    arrays = lambda o: (o.re, o.im, o.mre, o.mim, o.exp)  # noqa: E731
    one = np.empty_like(counts)
    for i in range(spec.height):
        for j in range(spec.width):
            ox = ((j + 0.5 - spec.width / 2) * spec.scale) / spec.width
            oy = -(((i + 0.5 - spec.height / 2) * spec.scale) / spec.width)
            one[i, j] = perturb._pixel(spec.julia, *arrays(ref), *arrays(crit), ox, oy, 0, False, spec.max_iter,
                                       spec.escape_radius**2, skip.m, skip.kr, skip.ki, skip.ke,
                                       skip.series.arrays(), table)[0]
    assert np.array_equal(one, counts) and len(np.unique(counts)) > 5


# --- bilinear approximation (fractally/picture/bla.py) ---

def _bla_spec(depth: str = "1e-400", max_iter: int = 3000):
    return parse_spec({**_view("mandelbrot", depth, ("0", "0")), "width": 64, "height": 48, "max_iter": max_iter})


def test_a_bla_entry_is_the_linear_recurrence_stepped_and_holds_within_its_radius():
    """Each merged entry: A and B of stepping A ← 2Z·A, B ← 2Z·B + 1 over its steps (in mpmath), and a δ
    just inside its radius, with the largest δc, stepped exactly (δ² kept) lands where A·δ + B·δc says."""
    import mpmath
    import numpy as np

    from fractally.picture import bla, orbit

    spec = _bla_spec()
    ref = orbit.orbits_for(spec)[0]
    table = bla.build(spec, ref)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(table.arrays(), bla.build(spec, ref).arrays()))
    cm, ce = bla.largest_offset(spec)
    checked = 0
    with mpmath.workprec(200):
        dc = mpmath.ldexp(mpmath.mpf(cm), ce) * mpmath.expjpi(mpmath.mpf(0.3))
        for level in range(1, len(table.counts)):
            for j in range(0, int(table.counts[level]), max(1, int(table.counts[level]) // 3)):
                k = int(table.offsets[level]) + j
                if table.rm[k] == 0.0:
                    continue
                first, steps = 1 + j * 2**level, 2**level
                a, b = mpmath.mpc(1), mpmath.mpc(0)
                zs = [mpmath.mpc(ref.re[m], ref.im[m]) for m in range(first, first + steps)]
                for z in zs:
                    a, b = 2 * z * a, 2 * z * b + 1
                assert abs(mpmath.mpc(table.ar[k], table.ai[k]) - a) <= 2.0**-40 * abs(a)
                assert abs(mpmath.mpc(table.br[k], table.bi[k]) - b) <= 2.0**-40 * abs(b)
                d0 = mpmath.ldexp(mpmath.mpf(table.rm[k]), int(table.rexp[k])) * 0.7 * mpmath.expjpi(mpmath.mpf(0.1))
                d = d0
                for z in zs:
                    d = 2 * z * d + d * d + dc
                linear = a * d0 + b * dc
                assert abs(d - linear) <= 2.0**-24 * (abs(a * d0) + abs(b * dc)), (level, j)
                checked += 1
    assert checked >= 10 and table.counts[0] == len(ref) - 2
    assert np.any(table.rm[table.offsets[6]:] > 0)  # jumps of 64 steps and more exist


def test_a_julia_view_has_no_bla_table():
    from fractally.picture import bla, orbit

    spec = parse_spec({**_view("julia-i", "1e-300", ("0", "0")), "width": 16, "height": 16, "max_iter": 2000})
    assert bla.table_for(spec, orbit.orbits_for(spec)[0]).counts[0] == 0


def _render_with(spec, table_of):
    from fractally.picture import bla
    from fractally.picture.tiling import render_tile_arrays, tile

    real = bla.table_for
    bla.table_for = table_of
    try:
        return render_tile_arrays(spec, tile(spec, 0))[0]
    finally:
        bla.table_for = real


def _minibrot_view(where: str, deep_minibrot: dict) -> dict:
    """The view beside the period-137 minibrot ("plain minibrot") or the period-797 one ("minibrot")."""
    if where == "plain minibrot":
        return _plain_minibrot()
    return {k: v for k, v in deep_minibrot.items() if k != "period"}


def _plain_minibrot() -> dict:
    """A period-137 minibrot 1e-102 wide beside c = i, 8 times its size: a plain (not extended) deep view
    whose pixels pass near 0 every period."""
    from tests.support.reference import minibrot_nucleus

    re_, im_, period, log_size = minibrot_nucleus(("3.1e-52", "1." + "0" * 51 + "7"), 480)
    assert period == 137
    scale = f"{10 ** (log_size % 1) * 8:.2f}e{int(log_size // 1)}"
    return {"fractal": "mandelbrot", "center": [re_, im_], "scale": scale}


@pytest.mark.parametrize("where", ["plain minibrot", "minibrot"])
def test_bla_on_and_off_give_the_same_counts_and_the_kernel_uses_it(where, deep_minibrot):
    """The jumps change no count here (100 % in the benchmark too); a table with a wrong A changes them,
    so the kernel does jump (in the four-pixel plain loop beside a minibrot of 1e-102; in extended form
    and in ``_pixel``'s plain loop beside the one of 3e-599)."""
    import dataclasses

    import numpy as np

    from fractally.picture import bla, period, perturb

    if where == "minibrot":
        spec = parse_spec({**_minibrot_view(where, deep_minibrot), "width": 32, "height": 24, "max_iter": 12_000,
                           "tile_size": 32})
    else:
        spec = parse_spec({**_minibrot_view(where, deep_minibrot), "width": 48, "height": 36, "max_iter": 8000,
                           "tile_size": 64})
        assert perturb.scale_parts(spec)[2] is False  # not extended: the four-pixel loop
    table = bla.table_for(spec, period.view_orbits(spec)[0])
    on = _render_with(spec, lambda s, r: table)
    off = _render_with(spec, lambda s, r: bla.empty())
    assert np.mean(on == off) >= 0.99 and len(np.unique(on)) > 5
    wrong = dataclasses.replace(table, ar=table.ar * 1.5)
    assert np.mean(_render_with(spec, lambda s, r: wrong) == on) < 0.9


@pytest.mark.parametrize("where", ["plain minibrot", "minibrot"])
def test_deep_minibrot_tiles_join_without_seams(where, deep_minibrot):
    """Beside a minibrot every pixel jumps every period (in the plain loop at 1e-102, in extended form at
    3e-599): the table is the whole view's, not a tile's."""
    _assert_tiles_join_without_seams({**_minibrot_view(where, deep_minibrot), "width": 40, "height": 24,
                                      "max_iter": 12_000})


# --- a reference on a nucleus, cut at its period (fractally/picture/period.py) ---

def _minibrot_spec(where: str, deep_minibrot: dict, max_iter: int = 5000):
    return parse_spec({**_minibrot_view(where, deep_minibrot), "width": 48, "height": 36, "max_iter": max_iter,
                       "tile_size": 64})


@pytest.mark.parametrize("where,period", [("plain minibrot", 137), ("minibrot", 797)])
def test_a_reference_on_a_minibrot_nucleus_is_cut_at_its_period(where, period, deep_minibrot):
    """The minibrot's nucleus is the reference: Z_p is 0 to within the reference's precision."""
    import numpy as np

    from fractally.picture import orbit
    from fractally.picture.period import view_orbits

    spec = _minibrot_spec(where, deep_minibrot)
    whole = orbit.orbits_for(spec)[0]
    ref, crit = view_orbits(spec)
    assert len(whole) == spec.max_iter and len(ref) == period + 1 and crit is ref
    assert np.array_equal(ref.re, whole.re[:period + 1]) and np.array_equal(ref.exp, whole.exp[:period + 1])
    assert ref.exp[period] < ref.exp[1:period].min() - 60  # Z_p: far nearer 0 than any entry before it


def _ball_period(spec, ref) -> int | None:
    """The first step p ≥ 1 at which the view's ball holds 0 (|Z_p| < r_p), in mpmath: None if none."""
    import mpmath

    from fractally.picture.bla import largest_offset

    cm, ce = largest_offset(spec)
    with mpmath.workprec(80):
        r0 = mpmath.ldexp(mpmath.mpf(cm), ce)
        r = r0
        for m in range(len(ref)):
            z = abs(mpmath.mpc(mpmath.ldexp(float(ref.mre[m]), int(ref.exp[m])),
                               mpmath.ldexp(float(ref.mim[m]), int(ref.exp[m]))))
            if m >= 1 and z < r:
                return m
            r = 2 * z * r + r * r + r0
    return None


@pytest.mark.parametrize("view", [
    {"fractal": "mandelbrot", "center": ["3.1e-32", "1.00000000000000000000000000000007"], "scale": "1e-30"},
    {"fractal": "mandelbrot", "center": ["-0.1", "0.00000000000000000000000000000000000000003"], "scale": "1e-40"},
    "a tenth of the view off the plain minibrot's nucleus",
])
def test_a_reference_is_cut_where_the_views_ball_first_holds_0(view):
    """Beside c = i the ball outgrows the set a few steps before the reference escapes; off a nucleus the
    ball still finds its period; inside the main cardioid it never holds 0 and the orbit stays whole."""
    from fractally.picture import orbit
    from fractally.picture.period import view_orbits
    from tests.support.reference import moved_right

    off_nucleus = isinstance(view, str)
    if off_nucleus:
        view = moved_right(_plain_minibrot())
    spec = parse_spec({**view, "width": 48, "height": 36, "max_iter": 3000})
    whole = orbit.orbits_for(spec)[0]
    ref, _ = view_orbits(spec)
    p = _ball_period(spec, whole)
    assert len(ref) == (len(whole) if p is None else p + 1)
    if off_nucleus:
        assert p == 137 and len(whole) > 1000  # the minibrot's period, though the reference escapes later
    elif spec.center[0] == -0.1:
        assert p is None and len(ref) == spec.max_iter  # interior: never cut
    else:
        assert p is not None and len(ref) < len(whole)  # a few steps before the reference escapes


@pytest.mark.parametrize("where", ["plain minibrot", "minibrot"])
def test_the_cut_changes_few_counts(where, deep_minibrot):
    """Rebasing every pixel at the period instead of by |Z + δ| < |δ| is exact arithmetic too: the counts
    stay those of the whole orbit on nearly every pixel (and agree with mpmath: the tests beside)."""
    import numpy as np

    from fractally.picture import orbit, perturb
    from fractally.picture.tiling import render_tile_arrays, tile

    spec = _minibrot_spec(where, deep_minibrot, max_iter=12_000)
    cut, _ = render_tile_arrays(spec, tile(spec, 0))
    whole = perturb.render_window(spec, orbit.orbits_for(spec), 0, 0, spec.height, spec.width)[0]
    assert np.mean(cut == whole) >= 0.97 and len(np.unique(cut)) > 20


# --- the series skip (fractally/picture/skip.py) ---

@pytest.mark.parametrize("fractal", ["mandelbrot", "julia"])
def test_the_series_skip_starts_a_corner_pixel_where_exact_steps_take_it(fractal, julia_repelling_point):
    """The pixel farthest from the centre (the series' worst case), stepped exactly in mpmath from its
    start to the series' step, lands where the series puts it; and the series skips past the linear step."""
    import mpmath

    from fractally.picture import orbit
    from fractally.picture.skip import skip_for

    spec = parse_spec({**_view(fractal, "1e-30", julia_repelling_point), "width": 64, "height": 48, "max_iter": 3000})
    ref, _ = orbit.orbits_for(spec)
    skip = skip_for(spec, ref)
    series = skip.series
    assert series.m > skip.m
    ox = ((0 + 0.5 - spec.width / 2) * spec.scale) / spec.width
    oy = -(((0 + 0.5 - spec.height / 2) * spec.scale) / spec.width)
    mpmath.mp.prec = 200
    offset = mpmath.mpc(ox, oy)
    delta, dc = (offset, 0) if spec.julia else (mpmath.mpc(0), offset)
    for m in range(series.m):
        z = mpmath.mpc(mpmath.ldexp(float(ref.mre[m]), int(ref.exp[m])), mpmath.ldexp(float(ref.mim[m]), int(ref.exp[m])))
        delta = 2 * z * delta + delta * delta + dc
    u = offset * series.inv_d
    approx = sum(mpmath.mpc(r, i) * u ** (k + 1) for k, (r, i) in enumerate(zip(series.re, series.im)))
    assert abs(approx - delta) < 2.0**-36 * abs(delta)
