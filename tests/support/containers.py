"""compose.yaml run for real with the images ``make images`` built (fixtures: tests/ops/conftest.py).

Each project is one compose project on free loopback ports (every container uses the host's
network and listens on 127.0.0.1), with the S3 and NATS stand-ins in place of MinIO's and NATS's
images, and short lease and ack-wait settings so recovery after a kill shows within seconds. The
project, its containers and its volumes are removed when the module ends.

The tests skip, saying why, only where no Docker engine can be had at all (``make test`` builds the
images first with ``docker/images.sh --if-possible``); with Docker present, a missing image fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from fractally.ops.stack import free_port

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose.yaml"
TAG = "0.1.0"
IMAGES = (f"ghcr.io/fractally/api:{TAG}", f"ghcr.io/fractally/render-tile:{TAG}",
          f"ghcr.io/fractally/assemble:{TAG}", f"fractally/s3-standin:{TAG}", f"fractally/nats-standin:{TAG}")
STARTUP_TIMEOUT = 120.0
JOB_TIMEOUT = 180.0
#: Seconds an api's dispatch lease lives without renewal in these projects (the api-kill test waits it out).
LEASE_TIMEOUT = 6
#: Seconds before NATS redelivers a task whose worker went silent (the worker-kill test waits it out).
ACK_WAIT = 5


def _docker_or_skip() -> None:
    if shutil.which("docker") is None or shutil.which("docker-compose") is None:
        pytest.skip("no Docker here: docker and docker-compose are not installed (make images installs them as root)")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine answers and this user cannot start one (make images starts dockerd as root)")
    missing = [image for image in IMAGES
               if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0]
    assert not missing, f"Docker is here but these images are not: {missing}; run `make images`"


@dataclass
class ComposeProject:
    """One running copy of compose.yaml, and the calls a test makes on it."""

    name: str
    env: dict[str, str]
    services: tuple[str, ...]
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['API_PORT']}"

    def compose(self, *args: str, timeout: float = STARTUP_TIMEOUT) -> str:
        out = subprocess.run(["docker-compose", "--project-name", self.name, "--file", str(COMPOSE_FILE), *args],
                             env=self.env, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def container(self, service: str) -> str:
        return self.compose("ps", "--quiet", service).strip()

    def docker(self, *args: str) -> str:
        return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=120).stdout

    def inspect(self, service: str, template: str) -> str:
        return self.docker("inspect", "--format", template, self.container(service)).strip()

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "30")

    def wait_healthy(self, url: str, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.session.get(url, timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{url} did not answer within {timeout:.0f} s\n{self.logs()}")

    def wait_up(self) -> None:
        self.wait_healthy(self.api + "/healthz")
        for service, port in (("render-tile-1", "RENDER_TILE_1_PORT"), ("render-tile-2", "RENDER_TILE_2_PORT"),
                              ("assemble", "ASSEMBLE_PORT"), ("worker", "WORKER_HEALTH_PORT")):
            if service in self.services:
                self.wait_healthy(f"http://127.0.0.1:{self.env[port]}/healthz")

    def submit(self, spec: dict[str, Any]) -> str:
        response = self.session.post(self.api + "/v1/renders", json=spec, timeout=30)
        assert response.status_code in (200, 201, 202), response.text
        return response.json()["id"]

    def status(self, job_id: str) -> dict[str, Any] | None:
        """The job's status, or None while the api (or its store) cannot answer: a container is restarting."""
        try:
            response = self.session.get(f"{self.api}/v1/renders/{job_id}", timeout=10)
        except requests.RequestException:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_tiles(self, job_id: str, at_least: int, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
        """Poll until ``at_least`` tiles are stored (the job is under way, not done)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.status(job_id)
            if body is not None and body["progress"]["tiles_done"] >= at_least:
                assert body["status"] != "done", "the job finished before the fault: give it more work"
                return body
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} stored fewer than {at_least} tiles\n{self.logs()}")

    def wait_done(self, job_id: str, timeout: float = JOB_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            body = self.status(job_id)
            if body is not None and body["status"] in ("done", "failed"):
                assert body["status"] == "done", body
                return body
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {body}\n{self.logs()}")

    def result_with_fault_mid_job(self, spec: dict[str, Any], fault: Callable[["ComposeProject"], None]) -> bytes:
        """Submit ``spec``, let a few tiles land, apply ``fault``, then poll (never resubmit) until done;
        the result's bytes."""
        job_id = self.submit(spec)
        self.wait_tiles(job_id, 5)
        fault(self)
        return self.result_bytes(self.wait_done(job_id))

    def result_bytes(self, done: dict[str, Any]) -> bytes:
        """The result as a user gets it: the URL in the finished job's status, fetched by a plain HTTP client."""
        url = done["result"]["url"]
        assert url.startswith(f"http://127.0.0.1:{self.env['S3_PORT']}/"), url
        with urllib.request.urlopen(url, timeout=30) as result:  # no SDK, no credentials
            return result.read()


def _project(name: str, services: tuple[str, ...], **settings: str) -> Iterator[ComposeProject]:
    _docker_or_skip()
    ports = ("API_PORT", "RENDER_TILE_1_PORT", "RENDER_TILE_2_PORT", "ASSEMBLE_PORT", "S3_PORT",
             "S3_CONSOLE_PORT", "NATS_PORT", "WORKER_HEALTH_PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRACTALLY_", "AWS_"))}
    env.update({port: str(free_port()) for port in ports})
    env.update(FRACTALLY_S3_IMAGE=f"fractally/s3-standin:{TAG}", FRACTALLY_NATS_IMAGE=f"fractally/nats-standin:{TAG}",
               FRACTALLY_LEASE_TIMEOUT=str(LEASE_TIMEOUT), FRACTALLY_NATS_ACK_WAIT=str(ACK_WAIT), **settings)
    project = ComposeProject(f"{name}{os.getpid()}", env, services)
    try:
        project.compose("up", "--detach", *services)
        project.wait_up()
        yield project
    finally:
        project.compose("down", "--volumes", "--timeout", "5")


