"""The queue invoker driven through the HTTP API: ``POST /v1/renders`` on a real ``fractally serve``
with ``FRACTALLY_INVOKER=queue`` → tile tasks on NATS JetStream → ``fractally worker`` processes →
status ``done`` → the result's bytes are ``fractally render``'s. And NATS restarted mid-job: the job
still finishes with the identical image (JetStream keeps its tasks in files; workers reconnect).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from fractally import jobs
from fractally.cli import main as cli_main
from fractally.config import Settings
from fractally.picture.spec import parse_spec
from tests.support.api import wait_until_done
from tests.support.queue import NatsServer, WorkerProcess

pytestmark = pytest.mark.slow

#: 16 tiles of ~0.1-0.3 s each on one core (much of the view is inside the set at max_iter 20 000).
SPEC = {"fractal": "mandelbrot", "center": [-0.2, 0.0], "scale": 1.6, "width": 256, "height": 256,
        "max_iter": 20_000, "tile_size": 64, "format": "png"}
CLI_ARGS = ["--fractal", "mandelbrot", "--center=-0.2,0", "--scale", "1.6", "--width", "256", "--height", "256",
            "--max-iter", "20000", "--tile-size", "64"]


def cli_png(out: Path) -> bytes:
    """The clean run: ``fractally render`` of ``SPEC`` on this machine."""
    assert cli_main(["render", *CLI_ARGS, "-q", "-o", str(out)]) == 0
    return out.read_bytes()


def submit(api: Any) -> str:
    response = requests.post(api.url + "/v1/renders", json=SPEC, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def status(api: Any, job_id: str) -> dict[str, Any]:
    return requests.get(f"{api.url}/v1/renders/{job_id}", timeout=30).json()


def result(api: Any, job_id: str) -> bytes:
    response = requests.get(f"{api.url}/v1/renders/{job_id}/result", timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
    return response.content


def test_a_job_posted_to_the_api_is_rendered_by_queue_workers_identically(
        queue_settings: Settings, start_queue_api: Callable[[Settings], Any],
        start_worker: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    workers = [start_worker(queue_settings, f"w{i}") for i in range(2)]
    api = start_queue_api(queue_settings)
    job_id = submit(api)
    done = wait_until_done(lambda i: status(api, i), job_id, timeout=120)
    assert done["status"] == "done", done
    assert done["progress"] == {"tiles_done": 16, "tiles_total": 16}
    assert result(api, job_id) == cli_png(tmp_path / "clean.png")
    rendered = [line for worker in workers for line in worker.matching(rf"job {job_id} tile \d+: done")]
    assert len(rendered) >= 16  # the workers rendered the tiles (the api process has no render pool at work)


def test_nats_restarted_mid_job_the_job_finishes_with_the_identical_image(
        queue_settings: Settings, own_nats: NatsServer, start_queue_api: Callable[[Settings], Any],
        start_worker: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    """Stopped once a tile is done and others are waiting in the stream, started again on the same port."""
    settings = queue_settings.with_(nats_url=own_nats.url)
    worker = start_worker(settings, "w")  # one worker: the job takes several seconds
    api = start_queue_api(settings)
    job_id = submit(api)
    worker.wait_for(rf"job {job_id} tile \d+: done", timeout=60)
    own_nats.stop()
    store = api.store
    stored = len(store.list(jobs.tiles_prefix(parse_spec(SPEC).pixels_hash())))
    assert stored < 16 and status(api, job_id)["status"] != "done"  # NATS went away mid-job
    own_nats.start()
    done = wait_until_done(lambda i: status(api, i), job_id, timeout=120)
    assert done["status"] == "done", done
    assert result(api, job_id) == cli_png(tmp_path / "clean.png")
    assert own_nats.starts == 2
