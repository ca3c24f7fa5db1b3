"""XYZ tiles: the scheme's maths (fractally/jobs/xyz.py) and ``GET /v1/tiles/{fractal}/{z}/{x}/{y}.png``."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest

from fractally import jobs
from fractally.jobs import xyz
from fractally.picture.codec import decode_png
from fractally.errors import NotFound, SpecError
from fractally.store import ObjectStore
from tests.support.api import store_snapshot

JULIA = "/v1/tiles/julia/{z}/{x}/{y}.png?c=-0.8,0.156"
#: Parents to split, from the top of the pyramid to its bottom (corners and the middle).
PARENTS = [(0, 0, 0), (1, 1, 0), (3, 2, 5), (17, 65_000, 3), (39, 0, 2**39 - 1), (39, 2**38, 2**38 - 1)]


def count_store_calls(monkeypatch: pytest.MonkeyPatch, store: ObjectStore) -> Counter:
    """Wrap the store's methods so a test can say how often each one was called."""
    calls: Counter = Counter()
    for name in ("get", "exists", "put", "put_if_absent", "put_file", "list", "delete"):
        original = getattr(store, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(store, name, counted)
    return calls


# --- the scheme -------------------------------------------------------------------------------

def test_tile_000_covers_the_square_from_minus_2_to_2():
    assert xyz.tile_bounds(0, 0, 0) == (-2.0, 2.0, -2.0, 2.0)
    spec = xyz.xyz_spec("mandelbrot", 0, 0, 0)
    assert (spec.center, spec.scale, spec.width, spec.height, spec.tile_size) == ((0.0, 0.0), 4.0, 256, 256, 256)
    assert spec.format == "png"


def test_y_counts_rows_down_from_imaginary_plus_2():
    assert xyz.tile_bounds(1, 0, 0) == (-2.0, 0.0, 0.0, 2.0)  # top left: negative real, positive imaginary
    assert xyz.tile_bounds(1, 1, 1) == (0.0, 2.0, -2.0, 0.0)


@pytest.mark.parametrize("z,x,y", PARENTS)
def test_four_children_cut_their_parent_into_exact_quarters(z, x, y):
    re0, re1, im0, im1 = xyz.tile_bounds(z, x, y)
    re_mid, im_mid = xyz.tile_center(z, x, y)
    assert xyz.tile_bounds(z + 1, 2 * x, 2 * y) == (re0, re_mid, im_mid, im1)
    assert xyz.tile_bounds(z + 1, 2 * x + 1, 2 * y) == (re_mid, re1, im_mid, im1)
    assert xyz.tile_bounds(z + 1, 2 * x, 2 * y + 1) == (re0, re_mid, im0, im_mid)
    assert xyz.tile_bounds(z + 1, 2 * x + 1, 2 * y + 1) == (re_mid, re1, im0, im_mid)


@pytest.mark.parametrize("z,x,y", PARENTS)
def test_children_specs_have_half_the_scale_and_centres_a_quarter_tile_away(z, x, y):
    parent = xyz.xyz_spec("mandelbrot", z, x, y)
    quarter = parent.scale / 4
    for dx in (0, 1):
        for dy in (0, 1):
            child = xyz.xyz_spec("mandelbrot", z + 1, 2 * x + dx, 2 * y + dy)
            assert child.scale == parent.scale / 2
            assert child.center == (parent.center[0] + (2 * dx - 1) * quarter,
                                    parent.center[1] - (2 * dy - 1) * quarter)


def test_iterations_grow_with_zoom_by_the_documented_rule():
    assert [xyz.default_max_iter(z) for z in (0, 1, 10, 40, 41, 48, 49, 298, 1000)] == \
        [200, 300, 1200, 4200, 4300, 5000, 5100, 30000, 30000]  # beyond 40 (deep tiles) the cap is 30,000
    assert xyz.xyz_spec("mandelbrot", 3, 1, 1).max_iter == 500
    assert xyz.xyz_spec("mandelbrot", 3, 1, 1, max_iter=77).max_iter == 77


def test_deepest_zoom_is_within_float64_resolution_everywhere():
    last = 2**xyz.MAX_ZOOM - 1
    for x, y in ((0, 0), (last, last), (2**39, 2**39)):  # the corners and the middle of the plane
        assert xyz.xyz_spec("mandelbrot", xyz.MAX_ZOOM, x, y).scale == 4 / 2**40


@pytest.mark.parametrize("z", [41, 60, 500, 1000])
def test_tiles_beyond_zoom_40_have_exact_decimal_centres_and_widths(z):
    from decimal import Decimal
    from fractions import Fraction

    x, y = 2**(z - 1) + 12345, 2**(z - 2) + 7
    spec = xyz.xyz_spec("mandelbrot", z, x, y)
    centre = spec.deep.center if spec.deep else spec.center
    scale = spec.deep.scale if spec.deep else spec.scale
    assert Fraction(Decimal(scale)) == Fraction(4, 2**z)
    assert Fraction(Decimal(centre[0])) == -2 + Fraction(2 * x + 1, 2**(z - 1))
    assert Fraction(Decimal(centre[1])) == 2 - Fraction(2 * y + 1, 2**(z - 1))
    assert (spec.deep is not None) == (z >= 60)  # z = 41 still resolves in float64


@pytest.mark.parametrize("z,x,y,field", [(1001, 0, 0, "z"), (-1, 0, 0, "z"), (2, 4, 0, "x"), (2, 0, 4, "y"),
                                         (0, 0, -1, "y"), (True, 0, 0, "z")])
def test_tiles_outside_the_pyramid_do_not_exist(z, x, y, field):
    with pytest.raises(NotFound) as err:
        xyz.xyz_spec("mandelbrot", z, x, y)
    assert err.value.field == field


def test_julia_tile_needs_c():
    with pytest.raises(SpecError) as err:
        xyz.xyz_spec("julia", 0, 0, 0)
    assert err.value.field == "c"


def test_png_key_is_built_from_the_content_hash_only():
    spec = xyz.xyz_spec("julia", 2, 1, 3, c=[-0.8, 0.156], colormap="dusk")
    assert xyz.png_key(spec) == f"xyz/{spec.content_hash()}.png"
    assert xyz.png_key(xyz.xyz_spec("julia", 2, 1, 3, c=[-0.8, 0.156], colormap="fire")) != xyz.png_key(spec)


# --- the endpoint -----------------------------------------------------------------------------

def test_tile_is_a_256px_png_with_its_hash_as_etag_and_immutable(api_client):
    response = api_client.get(JULIA.format(z=1, x=0, y=1))
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert decode_png(response.data).shape == (256, 256, 3)
    spec = xyz.xyz_spec("julia", 1, 0, 1, c=[-0.8, 0.156])
    assert response.headers["ETag"] == f'"{spec.content_hash()}"'
    cache = response.headers["Cache-Control"].replace(" ", "").split(",")
    assert sorted(cache) == ["immutable", "max-age=31536000", "public"]


def test_tile_has_the_pixels_of_a_synchronous_render_of_its_spec(api_client):
    """A tile is an ordinary spec: /v1/render.png of the same view gives the same picture."""
    tile = decode_png(api_client.get("/v1/tiles/mandelbrot/2/1/1.png?colormap=fire").data)
    whole = api_client.get("/v1/render.png?fractal=mandelbrot&center=-0.5,0.5&scale=1&width=256&height=256"
                           "&max_iter=400&colormap=fire")
    assert whole.status_code == 200
    assert np.array_equal(tile, decode_png(whole.data))


def test_tile_is_not_blank(api_client):
    pixels = decode_png(api_client.get(JULIA.format(z=1, x=1, y=0)).data).astype(float)
    assert pixels.std() > 10


def test_tile_counts_land_in_the_store_as_a_jobs_tile_would(api_client, api_store):
    api_client.get(JULIA.format(z=2, x=1, y=1))
    spec = xyz.xyz_spec("julia", 2, 1, 1, c=[-0.8, 0.156])
    assert api_store.exists(jobs.tile_key(spec.pixels_hash(), 0))
    assert api_store.exists(xyz.png_key(spec))


def test_if_none_match_is_304_without_touching_store_or_kernel(api_client, api_store, monkeypatch):
    etag = api_client.get(JULIA.format(z=1, x=1, y=1)).headers["ETag"]
    calls = count_store_calls(monkeypatch, api_store)
    monkeypatch.setattr(xyz, "render_png", lambda *a: pytest.fail("the kernel ran for a conditional request"))
    response = api_client.get(JULIA.format(z=1, x=1, y=1), headers={"If-None-Match": etag})
    assert response.status_code == 304 and response.data == b""
    assert response.headers["ETag"] == etag and "immutable" in response.headers["Cache-Control"]
    assert sum(calls.values()) == 0


def test_if_none_match_for_another_tile_renders_this_one(api_client):
    other = api_client.get(JULIA.format(z=1, x=0, y=0)).headers["ETag"]
    response = api_client.get(JULIA.format(z=1, x=1, y=0), headers={"If-None-Match": other})
    assert response.status_code == 200 and response.headers["ETag"] != other


def test_second_request_is_served_from_the_store_without_writing(api_client, api_store, monkeypatch):
    first = api_client.get(JULIA.format(z=3, x=2, y=3))
    calls = count_store_calls(monkeypatch, api_store)
    monkeypatch.setattr(xyz, "render_png", lambda *a: pytest.fail("rendered again"))
    second = api_client.get(JULIA.format(z=3, x=2, y=3))
    assert second.status_code == 200 and second.data == first.data
    assert calls["get"] == 1 and calls["put"] + calls["put_if_absent"] + calls["put_file"] == 0


def test_identical_requests_in_flight_share_one_render(api_app, api_client, monkeypatch):
    """Four requests for one new tile while its render runs: one render, three requests wait for it.

    The render is held until the other three have joined it (``TileState.joined``), so every request
    arrives while it is in flight: without coalescing each would start its own and never join."""
    renders: list[str] = []
    release = threading.Event()
    real = xyz.render_png
    tiles_state = api_app.extensions["fractally.tiles"]

    def held_render(spec, store):
        renders.append(spec.content_hash())
        release.wait(30)
        return real(spec, store)

    monkeypatch.setattr(xyz, "render_png", held_render)
    results: list[int] = []

    def fetch() -> None:
        results.append(api_client.get(JULIA.format(z=2, x=2, y=2)).status_code)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while tiles_state.joined < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        joined = tiles_state.joined
    finally:
        release.set()
        for t in threads:
            t.join(60)
    assert joined == 3
    assert results == [200] * 4 and len(renders) == 1


@pytest.mark.parametrize("path,status,field", [
    ("/v1/tiles/julia/1001/0/0.png?c=0,0", 404, "z"),
    ("/v1/tiles/julia/1/2/0.png?c=0,0", 404, "x"),
    ("/v1/tiles/julia/1/0/2.png?c=0,0", 404, "y"),
    ("/v1/tiles/julia/1/-1/0.png?c=0,0", 404, "x"),
    ("/v1/tiles/julia/z/0/0.png?c=0,0", 404, "z"),
    ("/v1/tiles/julia/99999999999999999999/0/0.png?c=0,0", 404, "z"),
    ("/v1/tiles/newton/0/0/0.png", 404, "fractal"),
    ("/v1/tiles/julia/0/0/0.png", 422, "c"),
    ("/v1/tiles/julia/0/0/0.png?c=0.3", 422, "c"),
    ("/v1/tiles/julia/0/0/0.png?c=0,nan", 422, "c"),
    ("/v1/tiles/julia/0/0/0.png?c=5000000,0", 422, "c"),
    ("/v1/tiles/julia/0/0/0.png?c=0,0&c=1,1", 422, "c"),
    ("/v1/tiles/julia/0/0/0.png?c=0,0&colormap=rainbow", 422, "colormap"),
    ("/v1/tiles/julia/0/0/0.png?c=0,0&max_iter=0", 422, "max_iter"),
    ("/v1/tiles/julia/0/0/0.png?c=0,0&max_iter=100000", 422, "max_iter"),
    ("/v1/tiles/julia/0/0/0.png?c=0,0&scale=1", 422, "scale"),
], ids=lambda v: v if isinstance(v, str) and v.startswith("/") else None)
def test_bad_tile_requests_get_a_json_error_and_write_nothing(api_client, api_store, path, status, field):
    response = api_client.get(path)
    assert response.status_code == status
    assert response.json["error"]["field"] == field and response.json["error"]["message"]
    assert store_snapshot(api_store) == []


def test_a_deep_tile_is_served(api_client):
    """Zoom 200 beside c = i: a deep view (perturbation), rendered like any tile."""
    z = 200
    x = 2**(z - 1) // 2 + 2**(z - 2)  # real part 0 + (half a tile)
    y = 2**(z - 2) - 1  # the row just above imaginary 1
    response = api_client.get(f"/v1/tiles/mandelbrot/{z}/{x}/{y}.png?max_iter=2000")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert decode_png(response.data).astype(float).std() > 5
