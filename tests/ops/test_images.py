"""The Dockerfile and the pins, checked offline: what every image build relies on.

The images themselves are built by ``make images`` and run in tests/ops/test_containers.py; here, that
the one Dockerfile builds with no network (no frontend pull, no heredoc, no index), has a target per
function named as k8s/ and stack.yml name the images, runs each function's own command as a
non-root user, proves its baked cache at build time, and that the pins are one set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from fractally.ops.stack import free_port
from tests.support import dockerfile

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("api", "render-tile", "assemble")


def test_dockerfile_builds_with_no_frontend_image_and_no_heredoc() -> None:
    """A `# syntax=` line makes BuildKit pull a frontend image; heredocs need that frontend."""
    text = dockerfile.DOCKERFILE.read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I)
    assert "<<" not in text


def test_every_pip_install_in_the_dockerfile_is_offline() -> None:
    runs = [" ".join(c.value) for c in dockerfile.commands() if c.cmd == "RUN" and "pip install" in " ".join(c.value)]
    assert runs
    for run in runs:
        for install in run.split("pip install")[1:]:
            assert "--no-index" in install.split("&&")[0], run


def test_the_base_image_is_a_build_argument_defaulting_to_the_official_slim_python() -> None:
    args = dict(c.value[0].split("=", 1) for c in dockerfile.commands() if c.cmd == "ARG" and "=" in c.value[0])
    assert re.fullmatch(r"python:3\.\d+-slim-\w+", args["BASE_IMAGE"])
    assert dockerfile.stages()["base"][0].value[0] == "${BASE_IMAGE}"


def test_there_is_a_target_per_function_named_as_k8s_and_stack_yml_name_the_images() -> None:
    named = set()
    for path in [*sorted((ROOT / "k8s").glob("*.yaml")), ROOT / "stack.yml"]:
        named |= set(re.findall(r"image:\s*ghcr\.io/fractally/([a-z-]+):", path.read_text()))
    assert named == set(TARGETS)
    assert set(TARGETS) <= set(dockerfile.stages())


@pytest.mark.parametrize("target", TARGETS)
def test_each_function_image_runs_its_own_command_as_a_non_root_user(target: str) -> None:
    cmd = dockerfile.last(target, "CMD")
    assert cmd.json, "exec form, so SIGTERM reaches the server"
    assert list(cmd.value) == ["fractally", "function", target]
    uid = dockerfile.last(target, "USER").value[0].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


@pytest.mark.parametrize("target", TARGETS)
def test_each_function_target_checks_at_build_time_that_its_command_compiles_nothing(target: str) -> None:
    own = dockerfile.stages()[target]
    checks = [list(c.value) for c in own if c.cmd == "RUN"]
    assert checks == [["/usr/local/bin/fractally-entrypoint", "fractally", "image-check", target]]
    user_at = [i for i, c in enumerate(dockerfile.lineage(target)) if c.cmd == "USER"][-1]
    run_at = [i for i, c in enumerate(dockerfile.lineage(target)) if c.cmd == "RUN"][-1]
    assert user_at < run_at, "the check runs as the image's user"


def test_the_kernels_are_warmed_from_the_root_not_from_a_source_folder() -> None:
    """A WORKDIR holding ./fractally would shadow the installed package: the cache would be written
    for paths the runtime never imports from."""
    lineage = dockerfile.lineage("render-tile")
    warm = [i for i, c in enumerate(lineage) if c.cmd == "RUN" and "fractally.picture.warmup" in " ".join(c.value)]
    assert len(warm) == 1
    workdirs = [c.value[0] for c in lineage[:warm[0]] if c.cmd == "WORKDIR"]
    assert workdirs and workdirs[-1] == "/"
    assert not [c for c in lineage if c.cmd == "COPY" and c.value[0].startswith(("fractally", "functions"))]


def test_the_function_command_serves_health_on_the_port_the_platform_sets(tmp_path: Path) -> None:
    """``fractally function NAME`` reads PORT (Knative sets it) and HOST, as the images run it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRACTALLY_")}
    env.update(PORT=str(port), HOST="127.0.0.1", FRACTALLY_STORE_URL=str(tmp_path / "store"))
    proc = subprocess.Popen([str(Path(sys.executable).parent / "fractally"), "function", "render-tile"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if requests.get(f"http://127.0.0.1:{port}/_/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, "the function exited"
            subprocess.run(["sleep", "0.1"])
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, "gunicorn stops cleanly on SIGTERM"


def test_a_copied_numba_cache_loads_without_compiling(tmp_path: Path) -> None:
    """The entrypoint's start-up copy of the baked cache (numba needs it writable) is complete: with
    the image's CPU target, a fresh process loads every kernel and compiles none."""
    numba_env = {k: v for k, v in dockerfile.env("render-tile").items() if k.startswith("NUMBA_CPU")}
    assert numba_env.get("NUMBA_CPU_NAME")
    env = {**os.environ, **numba_env}
    baked, copied = tmp_path / "baked", tmp_path / "copied"
    warm = [sys.executable, "-m", "fractally.picture.warmup"]
    subprocess.run(warm, env={**env, "NUMBA_CACHE_DIR": str(baked)}, check=True, capture_output=True)
    entrypoint = ROOT / "docker" / "entrypoint.sh"
    out = subprocess.run(["sh", "-c", f'sed "s#/opt/numba-cache#{baked}#g" {entrypoint} | sh -s -- "$@"', "sh", *warm],
                         env={**env, "NUMBA_CACHE_DIR": str(copied)}, check=True, capture_output=True, text=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["compiled"] == 0 and report["loaded"] >= 1


def test_constraints_pin_every_package_pyproject_pins_at_the_same_version() -> None:
    """pyproject.toml pins what the project asks for, constraints.txt everything: one set of versions."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra, pins in project["optional-dependencies"].items():
        if extra != "bench":
            wanted += pins
    locked = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                  if line and not line.startswith("#"))
    for pin in wanted:
        name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", pin).groups()
        assert locked.get(name.lower().replace("_", "-")) == version, pin


def test_compose_runs_every_function_as_a_cluster_does_on_loopback() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        assert service["network_mode"] == "host", name
        if "fractally/" in service["image"] and name != "bucket":
            assert service["read_only"] and service["tmpfs"] == ["/tmp"] and service["cap_drop"] == ["ALL"], name
            assert service["user"].split(":")[0] != "0"
            assert service["environment"]["HOST"] == "127.0.0.1", name
    assert "networks" not in compose


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed (make images)")
def test_compose_file_is_valid_for_docker_compose() -> None:
    out = subprocess.run(["docker-compose", "--file", str(ROOT / "compose.yaml"), "config", "--quiet"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
