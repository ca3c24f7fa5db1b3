"""The images, run as a cluster runs them, on compose.yaml's topology: a job ends in the picture
``fractally render`` makes, also when a container is killed or restarted under it.

Fixtures (tests/support/containers.py): ``http_project`` (S3, api, render-tile x2, assemble) and
``queue_project`` (S3, NATS JetStream, api, a worker), each a compose project on loopback ports.
Each fault test renders its own picture (job ids are content hashes) and compares bytes.
"""

from __future__ import annotations

import pytest

from tests.support.containers import ComposeProject

pytestmark = pytest.mark.slow

#: Enough tiles that a fault lands mid-job: about a second of work for each container of the path.
def _busy_spec(c_re: float) -> dict:
    return {"c": [c_re, 0.156], "width": 800, "height": 800, "tile_size": 32, "max_iter": 20000}


@pytest.mark.parametrize("service", ["api", "render-tile-1", "render-tile-2", "assemble"])
def test_each_function_container_runs_as_a_cluster_runs_it(http_project: ComposeProject, service: str) -> None:
    """Read-only root, a tmpfs /tmp, a numeric non-root user, no capabilities, the host's network."""
    template = "{{.HostConfig.ReadonlyRootfs}} {{.Config.User}} {{.HostConfig.CapDrop}} {{.HostConfig.NetworkMode}}"
    assert http_project.inspect(service, template) == "true 10001:10001 [ALL] host"
    assert "/tmp" in http_project.inspect(service, "{{json .HostConfig.Tmpfs}}")


def test_a_job_posted_to_the_api_container_ends_with_the_png_fractally_render_makes(
        http_project: ComposeProject, rendered) -> None:
    spec = {"c": [-0.8, 0.156], "width": 300, "height": 200, "tile_size": 64, "max_iter": 300}
    done = http_project.wait_done(http_project.submit(spec))
    assert http_project.result_bytes(done) == rendered(spec)


def test_restarting_the_s3_container_mid_job_ends_in_the_identical_image(
        http_project: ComposeProject, rendered) -> None:
    """Calls that meet the store away are retried; the store keeps its objects across the restart."""
    spec = _busy_spec(-0.77)
    restart = lambda p: p.docker("restart", "--time", "1", p.container("s3"))  # noqa: E731
    assert http_project.result_with_fault_mid_job(spec, restart) == rendered(spec)


def test_killing_a_render_tile_container_mid_job_ends_in_the_identical_image(
        http_project: ComposeProject, rendered) -> None:
    """The api's calls to the killed replica fail and are retried on the other one."""
    spec = _busy_spec(-0.79)
    kill = lambda p: p.docker("kill", p.container("render-tile-1"))  # noqa: E731
    assert http_project.result_with_fault_mid_job(spec, kill) == rendered(spec)
    http_project.docker("start", http_project.container("render-tile-1"))  # as the cluster would replace it
    http_project.wait_up()


def test_killing_and_restarting_the_api_container_mid_job_ends_in_the_identical_image(
        http_project: ComposeProject, rendered) -> None:
    """The restarted api finds the job's dispatch lease unrenewed (its holder's process is gone, in a pid
    namespace it cannot see: after LEASE_TIMEOUT), takes it over at a status poll and sends the tiles
    still missing. Nobody resubmits."""
    def kill_and_restart(project: ComposeProject) -> None:
        project.docker("kill", project.container("api"))
        project.docker("start", project.container("api"))
        project.wait_up()

    spec = _busy_spec(-0.78)
    assert http_project.result_with_fault_mid_job(spec, kill_and_restart) == rendered(spec)


def test_a_job_through_the_queue_ends_with_the_png_fractally_render_makes(
        queue_project: ComposeProject, rendered) -> None:
    spec = {"fractal": "mandelbrot", "width": 256, "height": 192, "tile_size": 64, "max_iter": 200}
    done = queue_project.wait_done(queue_project.submit(spec))
    assert queue_project.result_bytes(done) == rendered(spec)


def test_killing_a_worker_container_mid_job_ends_in_the_identical_image(
        queue_project: ComposeProject, rendered) -> None:
    """NATS redelivers the killed worker's unacknowledged tasks once the worker is back."""
    def kill_and_restart(project: ComposeProject) -> None:
        project.docker("kill", project.container("worker"))
        project.docker("start", project.container("worker"))

    spec = _busy_spec(-0.76)
    assert queue_project.result_with_fault_mid_job(spec, kill_and_restart) == rendered(spec)
