"""The explorer at ``/`` in a real browser (Debian's Chromium, headless, via Playwright), over a real
``fractally serve``: tiles load, c is picked on the Mandelbrot set, the views pan and zoom, the
state lives in the URL, and "Render full size" runs a job to its image.

Screenshots of every test land in ``test-artifacts/``; ``test-artifacts/explorer.png`` is the
README's picture (``make pictures`` runs the test that takes it and copies it into docs/).
"""

from __future__ import annotations

import io
import math
import re
from fractions import Fraction

import numpy as np
import pytest
import requests
from PIL import Image

from fractally.jobs import xyz
from tests.support.api import REPO_ROOT, LiveServer
from tests.support.browser import ARTIFACTS, BrowserPage

#: A known view: c = -0.8 + 0.156i, both panes at zoom 1.5, the Mandelbrot pane centred on -0.5.
START = "#c=-0.8,0.156&m=-0.5,0,1.5&j=0,0,1.5&colormap=ocean"
RES_AT_START = xyz.EXTENT / (xyz.TILE_PIXELS * 2**1.5)  # complex units per CSS pixel at zoom 1.5
#: Both panes have tiles, and none of the tiles their view needs is still on its way.
SETTLED = ("['mandelbrot', 'julia'].every((id) => { const p = document.getElementById(id);"
           " return p.dataset.pending === '0' && p.querySelectorAll('.tiles img.loaded').length > 0; })")
JULIA_SRCS = "[...document.querySelectorAll('#julia .tiles img')].map((i) => i.getAttribute('src'))"


def open_explorer(bp: BrowserPage, server: LiveServer, state: str = "") -> None:
    bp.page.goto(f"{server.url}/{state}")
    bp.wait_for(SETTLED)


def url_state(bp: BrowserPage) -> dict[str, object]:
    """The hash as numbers: c (re, im), m and j (x, y, zoom), colormap."""
    parts = dict(p.split("=", 1) for p in bp.page.evaluate("() => location.hash").lstrip("#").split("&"))
    state: dict[str, object] = {k: tuple(float(v) for v in parts[k].split(",")) for k in ("c", "m", "j")}
    state["colormap"] = parts["colormap"]
    return state


def wait_for_hash_change(bp: BrowserPage, old: str) -> dict[str, object]:
    bp.wait_for(f"location.hash !== {old!r}")
    return url_state(bp)


def pane_box(bp: BrowserPage, pane: str) -> dict[str, float]:
    return bp.page.locator(f"#{pane}").bounding_box()


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)


# --- without a browser --------------------------------------------------------------------------

def test_root_serves_the_explorer_under_a_content_security_policy(api_client):
    response = api_client.get("/")
    assert response.status_code == 200 and b'id="mandelbrot"' in response.data and b'id="julia"' in response.data
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_explorer_uses_the_servers_iteration_rule():
    """The page asks full-size jobs for the tiles' max_iter, so the colours match what is shown."""
    source = (REPO_ROOT / "functions/api/static/explorer.js").read_text()
    found = {name: int(re.search(rf"const {name} = (\d+);", source).group(1))
             for name in ("ITER_BASE", "ITER_PER_ZOOM", "ITER_CAP", "DEEP_ITER_CAP", "MAX_LEVEL", "MAX_DEEP_LEVEL",
                          "TILE")}
    assert found == {"ITER_BASE": xyz.ITER_BASE, "ITER_PER_ZOOM": xyz.ITER_PER_ZOOM, "ITER_CAP": xyz.ITER_CAP,
                     "DEEP_ITER_CAP": xyz.DEEP_ITER_CAP, "MAX_LEVEL": xyz.MAX_ZOOM,
                     "MAX_DEEP_LEVEL": xyz.MAX_DEEP_ZOOM, "TILE": xyz.TILE_PIXELS}


def test_colormap_picker_offers_every_colormap(api_client):
    from fractally.picture.colour import COLORMAPS

    html = api_client.get("/").get_data(as_text=True)
    select = html[html.index('<select id="colormap">'):]
    select = select[:select.index("</select>")]
    assert tuple(re.findall(r'<option value="([a-z]+)"', select)) == COLORMAPS


# --- in the browser -----------------------------------------------------------------------------

def test_explorer_loads_without_console_errors(browser_page, api_server):
    open_explorer(browser_page, api_server)
    assert browser_page.errors == []


def test_tiles_load_as_256px_images_that_are_not_blank(browser_page, api_server):
    open_explorer(browser_page, api_server, START)
    sizes = browser_page.page.evaluate(
        "() => [...document.querySelectorAll('.tiles img.loaded')].map((i) => [i.naturalWidth, i.naturalHeight])")
    assert len(sizes) >= 8 and all(size == [256, 256] for size in sizes)
    for pane in ("mandelbrot", "julia"):
        shown = pixels(browser_page.page.locator(f"#{pane}").screenshot())
        assert shown.std() > 20, f"the {pane} pane looks blank"


def test_click_on_the_mandelbrot_set_picks_c_and_redraws_the_julia_set(browser_page, api_server):
    open_explorer(browser_page, api_server, START)
    before = set(browser_page.page.evaluate(f"() => {JULIA_SRCS}"))
    box = pane_box(browser_page, "mandelbrot")
    target = (-0.12, 0.75)  # the "rabbit" bulb
    x = box["x"] + box["width"] / 2 + (target[0] - -0.5) / RES_AT_START
    y = box["y"] + box["height"] / 2 - target[1] / RES_AT_START
    browser_page.page.mouse.click(x, y)
    state = wait_for_hash_change(browser_page, START)
    c = state["c"]
    assert math.dist(c, target) < RES_AT_START
    text = browser_page.page.evaluate("() => new URLSearchParams(location.hash.slice(1)).get('c')")
    browser_page.wait_for(f"{JULIA_SRCS}.every((s) => s.includes('c={text}&'))"
                          " && document.getElementById('julia').dataset.pending === '0'")
    after = set(browser_page.page.evaluate(f"() => {JULIA_SRCS}"))
    assert after and not after & before
    assert browser_page.page.evaluate(
        "() => [...document.querySelectorAll('#julia .tiles img')].every((i) => i.naturalWidth === 256)")


def test_dragging_the_marker_moves_c(browser_page, api_server):
    open_explorer(browser_page, api_server, START)
    marker = browser_page.page.locator("#marker").bounding_box()
    x, y = marker["x"] + marker["width"] / 2, marker["y"] + marker["height"] / 2
    mouse = browser_page.page.mouse
    mouse.move(x, y)
    mouse.down()
    mouse.move(x + 40, y - 30, steps=5)
    mouse.up()
    re_, im = wait_for_hash_change(browser_page, START)["c"]
    assert abs(re_ - (-0.8 + 40 * RES_AT_START)) < 2 * RES_AT_START
    assert abs(im - (0.156 + 30 * RES_AT_START)) < 2 * RES_AT_START


def test_dragging_a_pane_pans_it(browser_page, api_server):
    open_explorer(browser_page, api_server, START)
    box = pane_box(browser_page, "julia")
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    mouse = browser_page.page.mouse
    mouse.move(x, y)
    mouse.down()
    mouse.move(x + 120, y + 60, steps=6)
    mouse.up()
    state = wait_for_hash_change(browser_page, START)
    jx, jy, zoom = state["j"]
    assert zoom == 1.5 and state["c"] == (-0.8, 0.156)  # a drag is not a click
    assert abs(jx - -120 * RES_AT_START) < RES_AT_START / 10 and abs(jy - 60 * RES_AT_START) < RES_AT_START / 10


def test_wheel_zooms_in_around_the_pointer(browser_page, api_server):
    open_explorer(browser_page, api_server, START)
    box = pane_box(browser_page, "julia")
    w, h = browser_page.page.evaluate("() => [document.getElementById('julia').clientWidth,"
                                      " document.getElementById('julia').clientHeight]")
    # Off centre, so the anchor point matters; whole CSS pixels, as the browser reports the pointer.
    x, y = round(box["x"] + w / 4), round(box["y"] + h / 4)
    px, py = x - box["x"], y - box["y"]
    under = ((px - w / 2) * RES_AT_START, -(py - h / 2) * RES_AT_START)
    browser_page.page.mouse.move(x, y)
    browser_page.page.mouse.wheel(0, -400)  # one level in
    jx, jy, zoom = wait_for_hash_change(browser_page, START)["j"]
    assert zoom == 2.5
    res = RES_AT_START / 2
    still_under = (jx + (px - w / 2) * res, jy - (py - h / 2) * res)
    assert math.dist(still_under, under) < res / 10


def test_pinch_zooms_the_pane(browser_page, api_server):
    open_explorer(browser_page, api_server, START)
    box = pane_box(browser_page, "julia")
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = browser_page.page.context.new_cdp_session(browser_page.page)

    def touch(kind: str, spread: float) -> None:
        points = [{"x": cx - spread, "y": cy, "id": 1}, {"x": cx + spread, "y": cy, "id": 2}]
        if kind == "touchEnd":
            points = []
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", 50)
    for spread in (60, 75, 90, 100):
        touch("touchMove", spread)
    touch("touchEnd", 0)
    jx, jy, zoom = wait_for_hash_change(browser_page, START)["j"]
    assert abs(zoom - 2.5) < 0.01  # the fingers' distance doubled: one level in
    assert math.hypot(jx, jy) < RES_AT_START  # about the midpoint, which stayed put


def test_url_state_round_trips_through_a_reload(browser_page, api_server):
    state = "#c=-0.7269,0.1889&m=-0.75,0.1,2.25&j=0.1,-0.2,2.5&colormap=dusk"
    open_explorer(browser_page, api_server, state)
    page = browser_page.page
    assert page.evaluate("() => location.hash") == state
    assert page.locator("#colormap").input_value() == "dusk"
    assert all("c=-0.7269,0.1889&colormap=dusk" in src for src in page.evaluate(f"() => {JULIA_SRCS}"))
    page.reload()
    browser_page.wait_for(SETTLED)
    assert page.evaluate("() => location.hash") == state


def test_colormap_picker_recolours_both_panes(browser_page, api_server):
    state = "#c=0.285,0.01&m=-0.55,0,1.8&j=0,0,1.6&colormap=ocean"  # also the README's picture
    open_explorer(browser_page, api_server, state)
    browser_page.page.select_option("#colormap", "dusk")
    assert wait_for_hash_change(browser_page, state)["colormap"] == "dusk"
    browser_page.wait_for(
        f"[...document.querySelectorAll('.tiles img')].every((i) => i.src.endsWith('colormap=dusk')) && {SETTLED}")
    browser_page.page.wait_for_timeout(400)  # let the tiles' fade-in finish before the picture is taken
    ARTIFACTS.mkdir(exist_ok=True)
    browser_page.page.screenshot(path=str(ARTIFACTS / "explorer.png"))
    assert browser_page.errors == []


def test_render_full_size_runs_a_job_to_100_percent_and_shows_its_image(browser_page, api_server):
    open_explorer(browser_page, api_server, START)
    page = browser_page.page
    page.select_option("#size", "1280x720")
    page.click("#render-full")
    browser_page.wait_for("!document.getElementById('job-result').hidden"
                          " && document.getElementById('job-thumb').complete"
                          " && document.getElementById('job-thumb').naturalWidth > 0", timeout=60)
    assert page.evaluate("() => document.getElementById('job-progress').value") == 1
    assert page.locator("#job-percent").inner_text() == "100 %"
    assert page.locator("#job-status").inner_text() == "done"
    size = page.evaluate("() => [document.getElementById('job-thumb').naturalWidth,"
                         " document.getElementById('job-thumb').naturalHeight]")
    assert size == [1280, 720]
    href = page.evaluate("() => document.getElementById('job-result').href")  # resolved: the page's are relative
    job = requests.get(href.removesuffix("/result"), timeout=10).json()
    assert job["spec"]["c"] == [-0.8, 0.156] and job["spec"]["center"] == [0.0, 0.0]  # the Julia pane's view
    assert job["spec"]["max_iter"] == xyz.default_max_iter(2)  # the tiles' level at zoom 1.5
    assert browser_page.errors == []


# --- deep zoom: past zoom 40 the view's centre is exact --------------------------------------------

#: The Misiurewicz point c = i: on the set's boundary, with detail at every depth.
DEEP_CENTRE = (Fraction(0), Fraction(1))
#: The tile pyramid's geometry (fractally/jobs/xyz.py), exactly.
EXTENT, LEFT, TOP = Fraction(xyz.EXTENT), Fraction(xyz.LEFT), Fraction(xyz.TOP)
MANDELBROT_IMGS = "[...document.querySelectorAll('#mandelbrot .tiles img')]"


def shown_tiles(bp: BrowserPage, level: int) -> set[tuple[int, int]]:
    """The Mandelbrot pane's current tiles of ``level``, as (x, y), from their URLs."""
    srcs = bp.page.evaluate(f"() => {MANDELBROT_IMGS}.filter((i) => i.style.zIndex === '2').map((i) => i.src)")
    found = {tuple(int(v) for v in re.search(r"/mandelbrot/(\d+)/(\d+)/(\d+)\.png", src).groups()) for src in srcs}
    assert {z for z, _, _ in found} == {level}, found
    return {(x, y) for _, x, y in found}


def expected_tiles(bp: BrowserPage, centre: tuple[Fraction, Fraction], zoom: float) -> set[tuple[int, int]]:
    """The tiles a pane of the page's size needs around ``centre`` at ``zoom``, computed exactly."""
    width, height = bp.page.evaluate("() => [document.getElementById('mandelbrot').clientWidth,"
                                     " document.getElementById('mandelbrot').clientHeight]")
    level = round(zoom)
    per_tile = Fraction(2) ** level / EXTENT  # tiles per complex unit at that level
    half_w = Fraction(width, 2) / xyz.TILE_PIXELS * Fraction(2) ** level / Fraction(2 ** zoom)  # tiles
    half_h = Fraction(height, 2) / xyz.TILE_PIXELS * Fraction(2) ** level / Fraction(2 ** zoom)
    cx = (centre[0] - LEFT) * per_tile
    cy = (TOP - centre[1]) * per_tile
    last = 2**level - 1
    xs = range(max(0, math.floor(cx - half_w)), min(last, math.floor(cx + half_w)) + 1)
    ys = range(max(0, math.floor(cy - half_h)), min(last, math.floor(cy + half_h)) + 1)
    return {(x, y) for x in xs for y in ys}


def deep_link(zoom: float, centre: tuple[str, str] = ("0", "1")) -> str:
    return f"#c=-0.8,0.156&m={centre[0]},{centre[1]},{zoom}&j=0,0,1.5&colormap=dusk"


@pytest.mark.parametrize("zoom", [60, 120])
def test_a_deep_link_shows_the_exact_tiles_of_its_level(browser_page, api_server, zoom):
    open_explorer(browser_page, api_server, deep_link(zoom))
    assert shown_tiles(browser_page, zoom) == expected_tiles(browser_page, DEEP_CENTRE, zoom)
    assert browser_page.page.evaluate(f"() => {MANDELBROT_IMGS}.every((i) => i.naturalWidth === 256)")
    shown = pixels(browser_page.page.locator("#mandelbrot").screenshot())
    assert shown.std() > 20, "the deep view looks blank"
    assert browser_page.errors == []


def test_a_deep_view_says_it_is_deep_with_its_width_and_iterations(browser_page, api_server):
    open_explorer(browser_page, api_server, deep_link(120))
    readout = browser_page.page.locator("#mandelbrot-readout").text_content()
    width = browser_page.page.evaluate("() => document.getElementById('mandelbrot').clientWidth")
    expected = f"{width * xyz.EXTENT / (xyz.TILE_PIXELS * 2**120):.1e}"
    assert f"zoom 120 · {xyz.default_max_iter(120):,} iterations · deep · {expected} wide" in readout
    assert "deep" in browser_page.page.evaluate("() => document.getElementById('mandelbrot').className")


def test_zooming_in_with_the_keyboard_goes_on_past_zoom_40(browser_page, api_server):
    open_explorer(browser_page, api_server, deep_link(39))
    page = browser_page.page
    page.locator("#mandelbrot").focus()
    for _ in range(4):
        page.keyboard.press("+")
    browser_page.wait_for("new URLSearchParams(location.hash.slice(1)).get('m').endsWith(',43')")
    browser_page.wait_for(SETTLED)
    assert shown_tiles(browser_page, 43) == expected_tiles(browser_page, DEEP_CENTRE, 43)
    assert browser_page.errors == []


def test_a_deep_view_keeps_its_centre_to_a_hundredth_of_a_pixel_through_panning_and_a_reload(
        browser_page, api_server):
    open_explorer(browser_page, api_server, deep_link(200))
    page = browser_page.page
    page.locator("#mandelbrot").focus()
    page.keyboard.press("ArrowLeft")  # 64 pixels to the left: the centre moves by 64 pixels of 2^-206
    browser_page.wait_for("new URLSearchParams(location.hash.slice(1)).get('m') !== '0,1,200'")
    browser_page.wait_for(SETTLED)
    x, y, zoom = page.evaluate("() => new URLSearchParams(location.hash.slice(1)).get('m')").split(",")
    pixel = EXTENT / xyz.TILE_PIXELS / 2**200
    assert abs(Fraction(x) - -64 * pixel) < pixel / 100 and (Fraction(y), zoom) == (1, "200")
    before = shown_tiles(browser_page, 200)
    assert before == expected_tiles(browser_page, (Fraction(x), Fraction(y)), 200)
    hash_before = page.evaluate("() => location.hash")
    page.reload()
    browser_page.wait_for(SETTLED)
    assert page.evaluate("() => location.hash") == hash_before
    assert shown_tiles(browser_page, 200) == before

