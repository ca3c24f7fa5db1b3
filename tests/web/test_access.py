"""Access and limits over real HTTP: the bearer token, presigned URL expiry, keys made of hashes,
and the deployment's containers (non-root, read-only root filesystem, functions not public).
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml

from fractally.config import Settings
from fractally.ops.stack import Stack
from tests.support import dockerfile
from tests.support.api import REPO_ROOT, LiveServer, running_server, store_snapshot
from tests.support.e2e import STARTUP_TIMEOUT, hermetic_env

TOKEN = "s3cret-token-for-tests"
SPEC = {"c": [-0.8, 0.156], "width": 64, "height": 48, "tile_size": 32, "max_iter": 100}
HTTP = 15.0
#: Every object the service writes: job records, tiles and explorer tiles, named by hashes only.
KEY = re.compile(r"^(jobs/[0-9a-f]{32}/(spec\.json|result\.(png|msgpack)|failed\.json|assemble\.claim|dispatch\.lease)"
                 r"|tiles/[0-9a-f]{32}/\d+\.tile|xyz/[0-9a-f]{32}\.png)$")


def wait_done(api: str, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(f"{api}/v1/renders/{job_id}", timeout=HTTP).json()
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


# --- the bearer token -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``fractally serve`` whose token comes from a file, as a Kubernetes or OpenFaaS secret mount gives it."""
    root = tmp_path_factory.mktemp("guarded")
    secret = root / "auth-token"
    secret.write_text(TOKEN + "\n")
    command = ["env", f"FRACTALLY_AUTH_TOKEN_FILE={secret}", sys.executable, "-m", "fractally.cli", "serve",
               "--host", "127.0.0.1", "--port", "0"]
    with running_server(root, command) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}",
                                           "Bearer", TOKEN, f"Bearer {TOKEN[:-1]}"],
                         ids=["none", "wrong", "longer", "basic-scheme", "no-token", "no-scheme", "prefix"])
def test_submit_without_the_right_token_is_401_and_writes_nothing(guarded, authorization):
    before = store_snapshot(guarded.store)
    headers = {"Authorization": authorization} if authorization else {}
    resp = requests.post(guarded.url + "/v1/renders", json=SPEC, headers=headers, timeout=HTTP)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer realm="fractally"'
    assert resp.json()["error"]["code"] == "unauthorized"
    assert TOKEN not in resp.text
    assert store_snapshot(guarded.store) == before


@pytest.mark.slow
def test_submit_with_the_token_is_202_and_reads_need_none(guarded):
    resp = requests.post(guarded.url + "/v1/renders", json=SPEC, headers={"Authorization": f"bearer {TOKEN}"},
                         timeout=HTTP)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    assert wait_done(guarded.url, job_id)["status"] == "done"
    for path in (f"/v1/renders/{job_id}", f"/v1/renders/{job_id}/result", "/v1/render.png?c=0,0&width=16&height=16",
                 "/healthz", "/openapi.json"):
        assert requests.get(guarded.url + path, timeout=HTTP).status_code == 200, path


# --- presigned result URLs --------------------------------------------------------------------

@pytest.mark.slow
def test_result_urls_carry_the_configured_expiry(tmp_path):
    stack = Stack(render_workers=1, log_dir=tmp_path, base_env=hermetic_env(), startup_timeout=STARTUP_TIMEOUT,
                  env={"FRACTALLY_URL_EXPIRY": "120"})
    with stack:
        api = stack.urls.api
        job_id = requests.post(api + "/v1/renders", json=SPEC, timeout=HTTP).json()["id"]
        url = wait_done(api, job_id)["result"]["url"]
        redirect = requests.get(f"{api}/v1/renders/{job_id}/result", allow_redirects=False, timeout=HTTP)
        assert redirect.status_code == 302
        for presigned in (url, redirect.headers["Location"]):
            query = parse_qs(urlsplit(presigned).query)
            assert query["X-Amz-Expires"] == ["120"] and query["X-Amz-Signature"]
        fetched = requests.get(url, timeout=HTTP)
        assert fetched.status_code == 200 and fetched.content[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("seconds", ["0", "-5", "604801"])
def test_url_expiry_out_of_range_is_refused_at_start(seconds):
    with pytest.raises(ValueError, match="FRACTALLY_URL_EXPIRY must be whole seconds from 1 to 604800"):
        Settings.from_env({"FRACTALLY_URL_EXPIRY": seconds})


# --- keys ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_stored_key_is_made_of_hashes(tmp_path):
    """User text (colormaps, formats, odd numbers) never reaches a key: after jobs and tiles, every key fits."""
    with running_server(tmp_path) as server:
        specs = [{**SPEC, "colormap": "dusk"}, {**SPEC, "format": "msgpack", "center": [1e-3, -0.0]},
                 {"fractal": "mandelbrot", "width": 40, "height": 40, "tile_size": 16, "max_iter": 64}]
        for spec in specs:
            job_id = requests.post(server.url + "/v1/renders", json=spec, timeout=HTTP).json()["id"]
            assert wait_done(server.url, job_id)["status"] == "done"
        tile = requests.get(server.url + "/v1/tiles/julia/1/0/1.png?c=-0.8,0.156&colormap=fire", timeout=60)
        assert tile.status_code == 200
        keys = server.store.list("")
        assert {k.split("/")[0] for k in keys} == {"jobs", "tiles", "xyz"}
        assert [k for k in keys if not KEY.fullmatch(k)] == []


# --- the deployment's containers ------------------------------------------------------------

K8S = REPO_ROOT / "k8s"


def _pod_specs() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict):
                continue
            template = (doc.get("spec") or {}).get("template") or {}
            pod = template.get("spec") or ((doc.get("spec") or {}).get("jobTemplate") or {}).get("spec", {}).get(
                "template", {}).get("spec")
            if pod and pod.get("containers"):
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", pod))
    return found


@pytest.mark.skipif(not K8S.is_dir(), reason="no k8s/ manifests in this checkout")
def test_every_container_runs_as_non_root_on_a_read_only_root_filesystem():
    pods = _pod_specs()
    assert pods
    problems = []
    for name, pod in pods:
        for container in pod.get("initContainers", []) + pod["containers"]:
            ctx = {**(pod.get("securityContext") or {}), **(container.get("securityContext") or {})}
            if not (ctx.get("runAsNonRoot") is True and ctx.get("runAsUser", 1) != 0):
                problems.append(f"{name} {container['name']}: may run as root")
            if ctx.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{name} {container['name']}: writable root filesystem")
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name} {container['name']}: privilege escalation allowed")
    assert problems == []


@pytest.mark.skipif(not K8S.is_dir(), reason="no k8s/ manifests in this checkout")
def test_render_tile_and_assemble_are_not_reachable_from_outside_the_cluster():
    """They take no token (the api's is for users): Knative must keep them cluster-local."""
    for name in ("render-tile.yaml", "assemble.yaml"):
        docs = [d for d in yaml.safe_load_all((K8S / name).read_text()) if isinstance(d, dict)]
        service = next(d for d in docs if d["kind"] == "Service")
        assert service["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local", name


@pytest.mark.parametrize("target", ["api", "render-tile", "assemble"])
def test_every_function_image_ends_as_a_non_root_user(target: str) -> None:
    uid = dockerfile.last(target, "USER").value[0].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
