"""The service end to end, over real HTTP, as a user sees it, in both modes.

Every case runs against ``fractally serve`` (one process, local folder) and against the
stack (separate gunicorn processes, HTTP invoker, S3 test server): the answers and the
pixels must not depend on how the service is deployed. The reference picture comes from
``fractally render`` on this machine.
"""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from fractally import jobs
from fractally.cli import main as fractally_cli
from fractally.picture.codec import decode_msgpack
from fractally.picture.spec import parse_spec
from tests.support.e2e import HTTP_TIMEOUT, STARTUP_TIMEOUT, Deployment, hermetic_env

pytestmark = pytest.mark.slow

# 150 x 100 in 48-pixel tiles: 4 x 3 tiles, ragged at the right and bottom edges.
BASE = {"fractal": "julia", "width": 150, "height": 100, "tile_size": 48, "max_iter": 120}


def spec_for(c: tuple[float, float], fmt: str, **extra: Any) -> dict[str, Any]:
    """Each test its own picture, so no test finds another's tiles in the shared store."""
    return {**BASE, "c": list(c), "format": fmt, **extra}


def cli_render(spec: dict[str, Any], out: Path) -> bytes:
    """``fractally render`` of the same spec (the format follows the file's suffix)."""
    argv = ["render", "-q", f"--c={spec['c'][0]},{spec['c'][1]}", "--width", str(spec["width"]),
            "--height", str(spec["height"]), "--tile-size", str(spec["tile_size"]),
            "--max-iter", str(spec["max_iter"]), "-o", str(out)]
    if "colormap" in spec:
        argv += ["--colormap", spec["colormap"]]
    assert fractally_cli(argv) == 0
    return out.read_bytes()


def run_job(deployment: Deployment, spec: dict[str, Any]) -> tuple[str, bytes]:
    """Submit, wait for done, fetch the result (following a redirect): (job id, bytes)."""
    resp = deployment.submit(spec)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    deployment.wait_done(job_id)
    result = deployment.session.get(f"{deployment.api}/v1/renders/{job_id}/result", timeout=HTTP_TIMEOUT)
    assert result.status_code == 200, result.text
    return job_id, result.content


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def assert_error(resp: requests.Response, low: int, high: int = 499) -> dict[str, Any]:
    assert low <= resp.status_code <= high, resp.text
    error = resp.json()["error"]
    assert set(error) == {"code", "message", "field"} and error["message"]
    return error


def test_png_job_is_pixel_identical_to_a_local_render(deployment, tmp_path):
    spec = spec_for((-0.8, 0.156), "png", colormap="fire")
    _, served = run_job(deployment, spec)
    assert served[:8] == b"\x89PNG\r\n\x1a\n"
    local = pixels(cli_render(spec, tmp_path / "local.png"))
    assert local.shape == (100, 150, 3)
    assert np.array_equal(pixels(served), local)


def test_msgpack_job_has_the_counts_of_a_local_render(deployment, tmp_path):
    spec = spec_for((0.285, 0.01), "msgpack")
    _, served = run_job(deployment, spec)
    remote, local = decode_msgpack(served), decode_msgpack(cli_render(spec, tmp_path / "local.msgpack"))
    assert remote.counts.shape == (100, 150) and remote.counts.max() > remote.counts.min()
    assert np.array_equal(remote.counts, local.counts)
    assert np.array_equal(remote.smooth, local.smooth)


def test_resubmitted_spec_gives_the_same_job_and_renders_nothing_again(deployment):
    spec = spec_for((-0.4, 0.6), "png")
    first = deployment.submit(spec).json()["id"]
    deployment.wait_done(first)
    tiles = jobs.tiles_prefix(parse_spec(spec).pixels_hash())
    before = deployment.object_versions(tiles)
    again = deployment.submit(spec)
    assert again.status_code == 202 and again.json()["id"] == first
    assert again.json()["status"] == "done"
    assert jobs.tiles_present(deployment.store, jobs.new_job(parse_spec(spec))) == set(range(12))
    assert deployment.object_versions(tiles) == before


@pytest.mark.parametrize("path", ["/v1/renders/{id}", "/v1/renders/{id}/result", "/v1/renders/not-an-id"])
def test_unknown_render_id_is_404(deployment, path):
    resp = deployment.session.get(deployment.api + path.format(id="0" * 32), timeout=HTTP_TIMEOUT)
    assert assert_error(resp, 404, 404)["code"] == "not_found"


@pytest.mark.parametrize("body, field", [
    ({"c": [-0.8, 0.156], "width": -5}, "width"),
    ({"fractal": "koch", "c": [0, 0]}, "fractal"),
    ({"c": "not a pair"}, "c"),
], ids=["negative width", "unknown fractal", "c not a pair"])
def test_bad_spec_is_a_4xx_json_error_and_changes_nothing(deployment, body, field):
    before = deployment.store.list()
    error = assert_error(deployment.submit(body), 400)
    assert error["field"] == field
    assert deployment.store.list() == before


def test_embedded_result_endpoint_serves_the_stored_bytes(embedded):
    job_id, _ = run_job(embedded, spec_for((-0.7, 0.27), "png"))
    resp = embedded.session.get(f"{embedded.api}/v1/renders/{job_id}/result", allow_redirects=False,
                                timeout=HTTP_TIMEOUT)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/png"
    assert resp.content == embedded.store.get(jobs.result_key(job_id, "png"))


def test_stack_result_endpoint_redirects_to_a_presigned_url_of_the_same_bytes(stack):
    job_id, _ = run_job(stack, spec_for((-0.7, 0.27), "msgpack"))
    resp = stack.session.get(f"{stack.api}/v1/renders/{job_id}/result", allow_redirects=False,
                             timeout=HTTP_TIMEOUT)
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert "X-Amz-Signature=" in location and not location.startswith(stack.api)
    fetched = requests.get(location, timeout=HTTP_TIMEOUT)
    assert fetched.status_code == 200
    assert fetched.content == stack.store.get(jobs.result_key(job_id, "msgpack"))


def test_stack_command_stops_every_server_on_sigterm(tmp_path):
    out = tmp_path / "stack.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "fractally.cli", "stack", "--port", "0", "--render-workers", "1"],
                                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=hermetic_env(),
                                cwd=tmp_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        banner = re.compile(r"api at (\S+)\n.*? at (\S+), assemble at (\S+)\n")
        while not (found := banner.search(out.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.1)
        urls = found.groups()
        assert all(requests.get(url + "/healthz", timeout=HTTP_TIMEOUT).ok for url in urls)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        for url in urls:  # the api, render_tile and assemble are gone with it
            with pytest.raises(requests.ConnectionError):
                requests.get(url + "/healthz", timeout=HTTP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()  # its servers get SIGTERM from the kernel (they die with their parent)
            proc.wait(timeout=10)
