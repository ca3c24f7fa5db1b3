"""Fixtures of the operations tests: the images run as containers with docker-compose."""

from __future__ import annotations

import subprocess
from typing import Any, Iterator

import pytest

from tests.support.containers import REPO, ComposeProject, _project


@pytest.fixture(scope="module")
def http_project() -> Iterator[ComposeProject]:
    """The HTTP path: S3, the api, two render-tile replicas and assemble."""
    yield from _project("fractallyhttp", ("s3", "bucket", "api", "render-tile-1", "render-tile-2", "assemble"))



@pytest.fixture(scope="module")
def queue_project() -> Iterator[ComposeProject]:
    """The queue path: S3, NATS JetStream, the api and a worker."""
    yield from _project("fractallyqueue", ("s3", "nats", "bucket", "api", "worker"),
                        FRACTALLY_INVOKER="queue", COMPOSE_PROFILES="queue")



@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory):
    """``fractally render``'s PNG of a spec, as bytes (the reference every container job must equal)."""
    folder = tmp_path_factory.mktemp("cli")

    def render(spec: dict[str, Any]) -> bytes:
        out = folder / f"{len(list(folder.iterdir()))}.png"
        argv = [str(REPO / ".venv" / "bin" / "fractally"), "render", "--quiet", "-o", str(out)]
        for key, value in spec.items():
            flag = "--" + key.replace("_", "-")
            argv.append(f"{flag}={','.join(map(str, value))}" if isinstance(value, list) else f"{flag}={value}")
        subprocess.run(argv, check=True, capture_output=True, timeout=300)
        return out.read_bytes()

    return render

