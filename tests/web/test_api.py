"""The api function: docs/api.md's endpoints, errors and limits, through Flask's test client and over real HTTP."""

from __future__ import annotations

import io
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image

from fractally import jobs
from fractally.cli import main as cli_main
from fractally.picture.codec import decode_msgpack
from fractally.config import Settings
from fractally.errors import StoreUnavailable
from fractally.picture.kernel import render_window
from fractally.jobs.service import Service, make_invoker
from fractally.picture.spec import parse_spec
from tests.support.api import SMALL_SPEC, running_server, store_snapshot, wait_until_done

JSON = "application/json"


def submit(client, spec: dict, **kwargs):
    return client.post("/v1/renders", json=spec, **kwargs)


def finished(client, spec: dict) -> dict:
    """Submit ``spec`` and wait for its job to finish; the final status body."""
    response = submit(client, spec)
    assert response.status_code == 202, response.json
    return wait_until_done(lambda i: client.get(f"/v1/renders/{i}").json, response.json["id"])


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def assert_error_shape(body: dict) -> dict:
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "field"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["field"] is None or isinstance(error["field"], str)
    return error


# --- submit and status ------------------------------------------------------------------------

def test_submit_answers_202_with_location_and_links(api_client):
    response = submit(api_client, SMALL_SPEC)
    assert response.status_code == 202
    body = response.json
    job_id = body["id"]
    assert response.headers["Location"] == f"http://localhost/v1/renders/{job_id}"
    assert body["status"] in jobs.STATUSES
    assert body["progress"]["tiles_total"] == 4
    assert body["links"] == {"self": f"/v1/renders/{job_id}", "result": f"/v1/renders/{job_id}/result"}
    assert body["spec"] == parse_spec(SMALL_SPEC).normalized()


def test_done_status_has_progress_and_result_url_on_this_api(api_client):
    body = finished(api_client, SMALL_SPEC)
    assert body["status"] == "done"
    assert body["progress"] == {"tiles_done": 4, "tiles_total": 4}
    assert body["result"] == {"url": f"http://localhost/v1/renders/{body['id']}/result", "format": "png"}


def test_public_url_setting_makes_the_result_url(api_make_app):
    client = api_make_app(public_url="https://fractal.example/api/").test_client()
    body = finished(client, SMALL_SPEC)
    assert body["result"]["url"] == f"https://fractal.example/api/v1/renders/{body['id']}/result"


def test_identical_spec_answers_with_the_same_job(api_client):
    first = submit(api_client, SMALL_SPEC).json
    reordered = {"tile_size": 16.0, "max_iter": 100, "height": 24, "width": 32, "c": [-0.8, 0.156],
                 "fractal": "julia", "format": "png"}
    second = submit(api_client, reordered)
    assert second.status_code == 202
    assert second.json["id"] == first["id"]


def test_identical_spec_submitted_again_starts_no_second_render(api_app, api_client):
    """Whether the first is still running or done, the second submit sets no work going: the invoker's
    count of started jobs is read when the answer is back, since a submit dispatches before it answers."""
    invoker = api_app.extensions["fractally"].service.invoker
    first = submit(api_client, SMALL_SPEC).json
    again = submit(api_client, SMALL_SPEC).json
    assert again["id"] == first["id"]
    assert invoker.dispatched == 1


def test_resubmitting_a_done_job_is_202_with_its_result_and_renders_nothing(api_app, api_client, api_store):
    invoker = api_app.extensions["fractally"].service.invoker
    done = finished(api_client, SMALL_SPEC)
    before = store_snapshot(api_store)
    again = submit(api_client, SMALL_SPEC)
    assert again.status_code == 202
    assert again.json["status"] == "done" and again.json["result"] == done["result"]
    assert invoker.dispatched == 1  # the first submit's; the done job is answered without dispatching it
    assert store_snapshot(api_store) == before


def test_unknown_id_is_404(api_client):
    response = api_client.get("/v1/renders/" + "0" * 32)
    assert response.status_code == 404
    assert assert_error_shape(response.json)["code"] == "not_found"


@pytest.mark.parametrize("bad_id", ["abc", "0" * 31 + "x", "%00", "..", "%C3%A9" * 32, "0" * 64])
def test_malformed_ids_never_reach_the_store(api_client, api_store, monkeypatch, bad_id):
    def touched(*args, **kwargs):
        raise AssertionError("the store was touched")

    for method in ("get", "exists", "list", "url", "put", "put_if_absent", "delete"):
        monkeypatch.setattr(api_store, method, touched)
    for path in (f"/v1/renders/{bad_id}", f"/v1/renders/{bad_id}/result"):
        response = api_client.get(path)
        assert response.status_code == 404, (path, response.json)


def test_failed_job_status_carries_its_error(api_client, api_store):
    job, _ = jobs.create(api_store, parse_spec(SMALL_SPEC))
    jobs.mark_failed(api_store, job.id, "2 tile(s) could not be rendered")
    body = api_client.get(f"/v1/renders/{job.id}").json
    assert body["status"] == "failed"
    assert body["error"]["message"] == "2 tile(s) could not be rendered"
    assert "result" not in body


# --- results ----------------------------------------------------------------------------------

def test_result_streams_the_png_inline_with_its_name(api_client):
    body = finished(api_client, SMALL_SPEC)
    response = api_client.get(f"/v1/renders/{body['id']}/result")
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.headers["Content-Disposition"] == f"inline; filename={body['id']}.png"
    assert png_pixels(response.data).shape == (24, 32, 3)


def test_msgpack_result_holds_the_kernels_counts(api_client):
    body = finished(api_client, {**SMALL_SPEC, "format": "msgpack"})
    response = api_client.get(f"/v1/renders/{body['id']}/result")
    assert response.mimetype == "application/msgpack"
    counts, _ = render_window(parse_spec({**SMALL_SPEC, "format": "msgpack"}), 0, 0, 24, 32)
    assert np.array_equal(decode_msgpack(response.data).counts, counts)


def test_result_of_an_unfinished_job_is_404_not_ready(api_client, api_store):
    job, _ = jobs.create(api_store, parse_spec(SMALL_SPEC))  # a manifest and no worker: stays queued
    response = api_client.get(f"/v1/renders/{job.id}/result")
    assert response.status_code == 404
    error = assert_error_shape(response.json)
    assert error["code"] == "not_ready" and "queued" in error["message"]


def test_result_redirects_to_a_presigned_url_with_an_s3_store(api_make_app, s3_store_factory, s3_server):
    store = s3_store_factory()
    settings = Settings(store_url=f"s3://{store.bucket}/t", workers=2)
    service = Service(settings, store, make_invoker(settings, store), ThreadPoolExecutor(1))
    client = api_make_app(service=service).test_client()
    body = finished(client, SMALL_SPEC)
    assert body["result"]["url"].startswith(s3_server + "/")
    response = client.get(f"/v1/renders/{body['id']}/result")
    assert response.status_code == 302
    assert response.headers["Location"].startswith(s3_server + "/") and "Signature" in response.headers["Location"]
    fetched = requests.get(response.headers["Location"], timeout=10)
    assert fetched.status_code == 200 and fetched.content.startswith(b"\x89PNG")


# --- synchronous renders ----------------------------------------------------------------------

def test_sync_png_has_the_requested_size(api_client):
    response = api_client.get("/v1/render.png?c=-0.8,0.156&width=64&height=40&max_iter=50")
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert png_pixels(response.data).shape == (40, 64, 3)


def test_sync_msgpack_matches_the_kernel(api_client):
    response = api_client.get("/v1/render.msgpack?fractal=mandelbrot&center=-0.5,0&scale=3&width=50&height=30")
    assert response.mimetype == "application/msgpack"
    spec = parse_spec({"fractal": "mandelbrot", "center": [-0.5, 0], "scale": 3, "width": 50, "height": 30,
                       "format": "msgpack"})
    assert np.array_equal(decode_msgpack(response.data).counts, render_window(spec, 0, 0, 30, 50)[0])


def test_sync_msgpack_takes_the_precision_parameter(api_client):
    response = api_client.get("/v1/render.msgpack?c=-0.8,0.156&width=48&height=32&precision=float32")
    assert response.status_code == 200
    spec = parse_spec({"c": [-0.8, 0.156], "width": 48, "height": 32, "precision": "float32", "format": "msgpack"})
    result = decode_msgpack(response.data)
    assert result.spec["precision"] == "float32"
    assert np.array_equal(result.counts, render_window(spec, 0, 0, 32, 48)[0])


def test_float32_job_is_its_own_job_with_float32_counts(api_client):
    exact = finished(api_client, {**SMALL_SPEC, "format": "msgpack"})
    fast = finished(api_client, {**SMALL_SPEC, "format": "msgpack", "precision": "float32"})
    assert fast["id"] != exact["id"] and fast["spec"]["precision"] == "float32"
    assert "precision" not in exact["spec"]
    counts = decode_msgpack(api_client.get(f"/v1/renders/{fast['id']}/result").data).counts
    spec = parse_spec({**SMALL_SPEC, "format": "msgpack", "precision": "float32"})
    assert np.array_equal(counts, render_window(spec, 0, 0, spec.height, spec.width)[0])


def test_sync_render_writes_nothing_to_the_store(api_client, api_store):
    assert api_client.get("/v1/render.png?c=0,0.7&width=16&height=16").status_code == 200
    assert store_snapshot(api_store) == []


def test_sync_render_when_every_slot_is_busy_is_503_with_retry_after(api_app, api_client):
    slots = api_app.extensions["fractally"].sync_slots
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    try:
        response = api_client.get("/v1/render.png?c=0,0.7&width=16&height=16")
    finally:
        for _ in range(taken):
            slots.release()
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert assert_error_shape(response.json)["code"] == "busy"


# --- operations -------------------------------------------------------------------------------

def test_healthz_is_ok(api_client):
    response = api_client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_is_ready_when_the_store_answers(api_client):
    response = api_client.get("/readyz")
    assert response.status_code == 200 and response.json == {"status": "ready"}


def test_readyz_is_503_without_details_when_the_store_fails(api_client, api_store, monkeypatch):
    def broken(key):
        raise OSError("disk gone at /srv/secret/path")

    monkeypatch.setattr(api_store, "exists", broken)
    response = api_client.get("/readyz")
    assert response.status_code == 503
    assert assert_error_shape(response.json)["code"] == StoreUnavailable.code
    assert "secret" not in response.get_data(as_text=True)


def test_render_form_page_is_html_with_a_content_security_policy(api_client):
    response = api_client.get("/render")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert b'<form id="spec"' in response.data
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert api_client.get("/static/app.js").status_code == 200


def test_unexpected_error_is_a_generic_500_without_its_text(api_make_app):
    app = api_make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret at /home/someone/fractally/x.py")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    error = assert_error_shape(response.json)
    assert error["code"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True) and "x.py" not in response.get_data(as_text=True)


# --- auth -------------------------------------------------------------------------------------

@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic czNjcmV0", "Bearer", "Bearer s3cret-and-more"])
def test_submit_without_the_token_is_401_and_writes_nothing(api_make_app, header):
    app = api_make_app(auth_token="s3cret")
    headers = {"Authorization": header} if header else {}
    response = submit(app.test_client(), SMALL_SPEC, headers=headers)
    assert response.status_code == 401
    assert assert_error_shape(response.json)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert store_snapshot(app.extensions["fractally"].service.store) == []


def test_submit_with_the_token_is_accepted(api_make_app):
    client = api_make_app(auth_token="s3cret").test_client()
    assert submit(client, SMALL_SPEC, headers={"Authorization": "Bearer s3cret"}).status_code == 202


def test_reads_need_no_token(api_make_app):
    client = api_make_app(auth_token="s3cret").test_client()
    assert client.get("/v1/render.png?c=0,0.7&width=8&height=8").status_code == 200
    assert client.get("/v1/renders/" + "0" * 32).status_code == 404


# --- bad requests: always 4xx JSON, nothing written -------------------------------------------

def _post(body: bytes | str, content_type: str | None = JSON) -> dict:
    return {"method": "POST", "path": "/v1/renders", "data": body, "content_type": content_type}


def _get(path: str) -> dict:
    return {"method": "GET", "path": path}


C = '"c": [-0.8, 0.156]'
BAD_REQUESTS = [
    # (id, request, status, field)
    ("malformed-json", _post('{"c": [-0.8,'), 400, None),
    ("trailing-garbage", _post('{"c": [-0.8, 0.156]} x'), 400, None),
    ("text-plain", _post(f"{{{C}}}", "text/plain"), 400, None),
    ("form-encoded", _post("c=-0.8,0.156", "application/x-www-form-urlencoded"), 400, None),
    ("no-content-type", _post(f"{{{C}}}", None), 400, None),
    ("empty-body", _post(""), 400, None),
    ("not-utf8", _post(b'{"c": [-0.8, 0.156], "colormap": "\xff"}'), 400, None),
    ("duplicate-key", _post(f'{{{C}, "c": [0, 0]}}'), 400, "c"),
    ("deep-nesting", _post("[" * 50_000), 400, None),
    ("oversized-body", _post(f'{{{C}, "colormap": "{"x" * 70_000}"}}'), 413, None),
    ("array-not-object", _post("[1, 2]"), 422, None),
    ("null-document", _post("null"), 422, None),
    ("nan-literal", _post('{"c": [NaN, 0.156]}'), 422, "c"),
    ("infinity-literal", _post(f'{{{C}, "scale": Infinity}}'), 422, "scale"),
    ("huge-float", _post(f'{{{C}, "scale": 1e400}}'), 422, "scale"),
    ("huge-integer-in-pair", _post('{"c": [' + "9" * 400 + ", 0]}"), 422, "c"),
    ("integer-over-digit-limit", _post(f'{{{C}, "max_iter": {"9" * 5000}}}'), 422, "max_iter"),
    ("boolean-width", _post(f'{{{C}, "width": true}}'), 422, "width"),
    ("string-width", _post(f'{{{C}, "width": "100"}}'), 422, "width"),
    ("fractional-width", _post(f'{{{C}, "width": 100.5}}'), 422, "width"),
    ("huge-width", _post(f'{{{C}, "width": 1000000}}'), 422, "width"),
    ("too-many-pixels", _post(f'{{{C}, "width": 40000, "height": 40000}}'), 422, "width"),
    ("zero-max-iter", _post(f'{{{C}, "max_iter": 0}}'), 422, "max_iter"),
    ("huge-max-iter", _post(f'{{{C}, "max_iter": 10000000}}'), 422, "max_iter"),
    ("unknown-field", _post(f'{{{C}, "zoom": 2}}'), 422, "zoom"),
    ("missing-c", _post("{}"), 422, "c"),
    ("c-one-number", _post('{"c": [0.3]}'), 422, "c"),
    ("c-as-text", _post('{"c": "-0.8,0.156"}'), 422, "c"),
    ("c-boolean", _post('{"c": [true, false]}'), 422, "c"),
    ("center-out-of-range", _post(f'{{{C}, "center": [1e7, 0]}}'), 422, "center"),
    ("zero-scale", _post(f'{{{C}, "scale": 0}}'), 422, "scale"),
    ("negative-scale", _post(f'{{{C}, "scale": -1}}'), 422, "scale"),
    ("scale-below-the-deepest", _post(f'{{{C}, "scale": "1e-1001"}}'), 422, "scale"),  # 1e-300 is a deep view
    ("small-escape-radius", _post(f'{{{C}, "escape_radius": 1}}'), 422, "escape_radius"),
    ("tiny-tiles", _post(f'{{{C}, "tile_size": 8}}'), 422, "tile_size"),
    ("unknown-fractal", _post('{"fractal": "burning_ship"}'), 422, "fractal"),
    ("unknown-format", _post(f'{{{C}, "format": "jpeg"}}'), 422, "format"),
    ("unknown-colormap", _post(f'{{{C}, "colormap": "rainbow"}}'), 422, "colormap"),
    ("msgpack-too-big", _post(f'{{{C}, "width": 32768, "height": 32768, "format": "msgpack"}}'), 422, "format"),
    ("unknown-precision", _post(f'{{{C}, "precision": "float16"}}'), 422, "precision"),
    ("float32-deep-zoom", _post(f'{{{C}, "scale": 1e-6, "precision": "float32"}}'), 422, "precision"),
    ("float32-huge-escape-radius", _post(f'{{{C}, "escape_radius": 1e30, "precision": "float32"}}'), 422,
     "precision"),
    ("id-too-short", _get("/v1/renders/abc"), 404, "id"),
    ("id-too-long", _get("/v1/renders/" + "0" * 33), 404, "id"),
    ("id-uppercase", _get("/v1/renders/" + "A" * 32), 404, "id"),
    ("id-not-hex", _get("/v1/renders/" + "g" * 32), 404, "id"),
    ("id-nul", _get("/v1/renders/%00"), 404, "id"),
    ("id-dot-dot", _get("/v1/renders/.."), 404, "id"),
    ("id-encoded-traversal", _get("/v1/renders/..%2F..%2Fetc%2Fpasswd"), 404, None),
    ("id-traversal", _get("/v1/renders/../../etc/passwd"), 404, None),
    ("id-unicode", _get("/v1/renders/" + "é" * 32), 404, "id"),
    ("result-bad-id", _get("/v1/renders/..%00/result"), 404, "id"),
    ("result-unknown-id", _get("/v1/renders/" + "f" * 32 + "/result"), 404, "id"),
    ("unknown-route", _get("/v2/renders"), 404, None),
    ("trailing-slash", _get("/v1/renders/"), 404, None),
    ("list-renders", _get("/v1/renders"), 405, None),
    ("delete-render", {"method": "DELETE", "path": "/v1/renders/" + "0" * 32}, 405, None),
    ("put-healthz", {"method": "PUT", "path": "/healthz"}, 405, None),
    ("post-sync-render", {"method": "POST", "path": "/v1/render.png", "json": {"c": [0, 0]}}, 405, None),
    ("sync-too-many-pixels", _get("/v1/render.png?c=0,0&width=5000&height=5000"), 422, "width"),
    ("sync-too-much-work", _get("/v1/render.png?c=0,0&width=1000&height=1000&max_iter=100000"), 422, "max_iter"),
    ("sync-c-one-number", _get("/v1/render.png?c=1"), 422, "c"),
    ("sync-c-words", _get("/v1/render.png?c=a,b"), 422, "c"),
    ("sync-c-infinite", _get("/v1/render.png?c=inf,0"), 422, "c"),
    ("sync-scale-nan", _get("/v1/render.png?c=0,0&scale=nan"), 422, "scale"),
    ("sync-width-float-text", _get("/v1/render.png?c=0,0&width=1e3"), 422, "width"),
    ("sync-width-nul", _get("/v1/render.png?c=0,0&width=%00"), 422, "width"),
    ("sync-unknown-parameter", _get("/v1/render.png?c=0,0&zoom=2"), 422, "zoom"),
    ("sync-repeated-key", _get("/v1/render.png?c=0,0&c=1,1"), 422, "c"),
    ("sync-format-mismatch", _get("/v1/render.png?c=0,0&format=msgpack"), 422, "format"),
    ("sync-float32-deep-zoom", _get("/v1/render.png?c=0,0&scale=1e-6&precision=float32"), 422, "precision"),
    ("sync-unknown-precision", _get("/v1/render.png?c=0,0&precision=half"), 422, "precision"),
    ("sync-long-value", _get("/v1/render.png?c=0,0&colormap=" + "x" * 300), 422, "colormap"),
    ("sync-absurd-query", _get("/v1/render.png?" + "&".join(f"c={i},{i}" for i in range(2000))), 414, None),
]


@pytest.mark.parametrize("request_, status, field", [r[1:] for r in BAD_REQUESTS], ids=[r[0] for r in BAD_REQUESTS])
def test_bad_request_is_a_4xx_json_error_and_writes_nothing(api_client, api_store, request_, status, field):
    before = store_snapshot(api_store)
    kwargs = dict(request_)
    response = api_client.open(kwargs.pop("path"), **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    assert response.mimetype == JSON
    error = assert_error_shape(response.json)
    assert error["field"] == field
    assert store_snapshot(api_store) == before


# --- over real HTTP: fractally serve ------------------------------------------------------------

def http_finished(server, spec: dict) -> dict:
    response = requests.post(server.url + "/v1/renders", json=spec, timeout=10)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"{server.url}/v1/renders/{response.json()['id']}"
    return wait_until_done(lambda i: requests.get(f"{server.url}/v1/renders/{i}", timeout=10).json(),
                           response.json()["id"])


@pytest.mark.slow
def test_http_png_job_is_pixel_identical_to_fractally_render(api_server, tmp_path):
    spec = {"c": [-0.4, 0.6], "width": 90, "height": 50, "max_iter": 300, "tile_size": 32, "colormap": "fire"}
    body = http_finished(api_server, spec)
    assert body["status"] == "done"
    result = requests.get(body["result"]["url"], timeout=10)
    assert result.status_code == 200 and result.headers["Content-Type"] == "image/png"
    out = tmp_path / "cli.png"
    assert cli_main(["render", "--c=-0.4,0.6", "--width", "90", "--height", "50", "--max-iter", "300",
                     "--tile-size", "32", "--colormap", "fire", "-q", "-o", str(out)]) == 0
    assert np.array_equal(png_pixels(result.content), png_pixels(out.read_bytes()))


@pytest.mark.slow
def test_http_msgpack_job_holds_the_kernels_counts(api_server):
    spec = {"fractal": "mandelbrot", "center": [-0.75, 0.1], "scale": 0.5, "width": 70, "height": 40,
            "max_iter": 400, "tile_size": 16, "format": "msgpack"}
    body = http_finished(api_server, spec)
    result = requests.get(f"{api_server.url}/v1/renders/{body['id']}/result", timeout=10)
    assert result.headers["Content-Type"] == "application/msgpack"
    decoded = decode_msgpack(result.content)
    counts, _ = render_window(parse_spec(spec), 0, 0, 40, 70)
    assert np.array_equal(decoded.counts, counts)


@pytest.mark.slow
def test_http_same_spec_twice_is_the_same_job_answered_done(api_server):
    """Over the wire, a done job's spec sent again is the same job, answered done with its result at once
    (that no work is started again is checked in-process, where the invoker can be read:
    ``test_resubmitting_a_done_job_is_202_with_its_result_and_renders_nothing``)."""
    spec = {"c": [0.285, 0.01], "width": 48, "height": 48, "max_iter": 200, "tile_size": 16}
    first = http_finished(api_server, spec)
    assert first["status"] == "done"
    again = requests.post(api_server.url + "/v1/renders", json=spec, timeout=10)
    assert again.status_code == 202
    assert again.json()["id"] == first["id"]
    assert again.json()["status"] == "done" and again.json()["result"] == first["result"]


@pytest.mark.slow
def test_http_unknown_id_is_404_json(api_server):
    response = requests.get(f"{api_server.url}/v1/renders/{'e' * 32}", timeout=10)
    assert response.status_code == 404
    assert assert_error_shape(response.json())["code"] == "not_found"


@pytest.mark.slow
@pytest.mark.parametrize("body, content_type", [
    ('{"c": [0, 0], "width": 0}', JSON),
    ('{"c": [0, 0], "scale": NaN}', JSON),
    ('{"c": [0, 0]', JSON),
    ('{"c": [0, 0]}', "text/plain"),
    ('{"c": [0, 0], "colormap": "' + "x" * 100_000 + '"}', JSON),
], ids=["zero-width", "nan", "malformed", "text-plain", "oversized"])
def test_http_bad_spec_is_4xx_and_writes_nothing(api_server, body, content_type):
    before = api_server.store.list("")
    response = requests.post(api_server.url + "/v1/renders", data=body.encode(),
                             headers={"Content-Type": content_type}, timeout=10)
    assert 400 <= response.status_code < 500
    assert_error_shape(response.json())
    assert api_server.store.list("") == before


@pytest.mark.slow
def test_http_sync_png_has_the_requested_size(api_server):
    response = requests.get(api_server.url + "/v1/render.png",
                            params={"c": "-0.8,0.156", "width": 320, "height": 180}, timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    assert png_pixels(response.content).shape == (180, 320, 3)


@pytest.mark.slow
def test_http_healthz_is_ok(api_server):
    response = requests.get(api_server.url + "/healthz", timeout=10)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.slow
def test_http_openapi_document_is_served(api_server):
    response = requests.get(api_server.url + "/openapi.json", timeout=10)
    assert response.status_code == 200 and response.json()["openapi"].startswith("3.1")


@pytest.mark.slow
def test_serve_prints_its_url_and_stops_cleanly_on_sigterm(tmp_path):
    with running_server(tmp_path) as server:
        banner = server.stdout.read_text()
        assert f"serving at {server.url}/" in banner
        assert "curl -s -X POST localhost:" in banner and "/v1/renders" in banner
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0


@pytest.mark.slow
def test_gunicorn_runs_the_app_factory_from_the_repo_root(tmp_path):
    command = [sys.executable, "-m", "gunicorn", "--no-control-socket", "--bind", "127.0.0.1:0",
               "functions.api.app:create_app()"]
    with running_server(tmp_path, command) as server:
        response = requests.post(server.url + "/v1/renders", json=SMALL_SPEC, timeout=10)
        assert response.status_code == 202
        assert (server.store_root / "jobs" / response.json()["id"] / "spec.json").is_file()
