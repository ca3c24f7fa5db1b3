"""``fractally deploy`` and ``status`` through the real kubernetes client, against an API server stub.

The stub speaks the Kubernetes API over HTTP on 127.0.0.1 as far as deploy uses it: discovery
(``/version``, ``/api``, ``/apis`` and each group version's resource list), server-side apply (``PATCH`` with
``application/apply-patch+yaml``, ``fieldManager``, ``force``), create (``POST``, 409 when the object
exists), reads (404 with a ``Status`` when absent), and refusals as a kube-apiserver words them (a
``Status`` with ``message``, ``reason`` and ``code``). So the client's discovery, request building
and error mapping run for real; only the cluster behind them is pretend.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from fractally.ops.deploy import FIELD_MANAGER, SECRET_NAME, KubernetesCluster, apply_order, deploy, render, status

pytest.importorskip("kubernetes")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
NAMESPACE = "fractally"

#: The API groups the stub serves: group version -> [(plural, kind, namespaced)].
RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [("namespaces", "Namespace", False), ("configmaps", "ConfigMap", True), ("secrets", "Secret", True),
           ("persistentvolumeclaims", "PersistentVolumeClaim", True), ("services", "Service", True)],
    "apps/v1": [("deployments", "Deployment", True)],
    "batch/v1": [("jobs", "Job", True)],
    "serving.knative.dev/v1": [("services", "Service", True)],
}
IMMUTABLE_JOB = ('Job.batch "minio-create-bucket" is invalid: spec.template: Invalid value: '
                 'core.PodTemplateSpec{...}: field is immutable')


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A kube-apiserver ``Status`` object, the body of every error answer."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


@dataclass
class ApiServer:
    """What the stub knows and saw. ``refuse`` maps (plural, name) to a Status to answer instead."""

    url: str = ""
    groups: dict[str, list[tuple[str, str, bool]]] = field(default_factory=lambda: dict(RESOURCES))
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> object
    requests: list[tuple[str, str, dict[str, list[str]], str]] = field(default_factory=list)
    refuse: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    unauthorized: bool = False

    def applied(self) -> list[tuple[str, str]]:
        """(path, query) of every server-side apply, in order."""
        return [(path, query) for method, path, query, ctype in self.requests
                if method == "PATCH" and ctype == "application/apply-patch+yaml"]


def _resource_list(group_version: str, resources: list[tuple[str, str, bool]]) -> dict[str, Any]:
    verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [{"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                           "verbs": verbs} for plural, kind, namespaced in resources]}


def _discovery(server: ApiServer, path: str) -> dict[str, Any] | None:
    if path == "/version":
        return {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        groups = {}
        for gv in server.groups:
            if "/" in gv:
                group, version = gv.split("/")
                groups.setdefault(group, []).append({"groupVersion": gv, "version": version})
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [{"name": g, "versions": v, "preferredVersion": v[0]} for g, v in groups.items()]}
    for gv, resources in server.groups.items():
        if path == ("/api/v1" if gv == "v1" else f"/apis/{gv}"):
            return _resource_list(gv, resources)
    return None


def _ready(obj: dict[str, Any], server: ApiServer) -> dict[str, Any]:
    """What a controller would have written: a Knative Service Ready, a Deployment's replicas up."""
    obj = {**obj, "metadata": {**obj["metadata"], "generation": 1}}
    if obj["apiVersion"] == "serving.knative.dev/v1":
        name = obj["metadata"]["name"]
        obj["status"] = {"observedGeneration": 1, "url": f"http://{name}.{NAMESPACE}.example.com",
                         "conditions": [{"type": "Ready", "status": "True"}]}
    if obj["kind"] == "Deployment":  # the API server's default: one replica when the manifest sets none
        obj["spec"] = {"replicas": 1, **obj["spec"]}
        obj["status"] = {"readyReplicas": obj["spec"]["replicas"], "replicas": obj["spec"]["replicas"]}
    return obj


def make_handler(server: ApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            ctype = (self.headers.get("Content-Type") or "").split(";")[0]
            server.requests.append((self.command, url.path, query, ctype))
            if server.unauthorized:
                return self._answer(401, status_body(401, "Unauthorized", "Unauthorized"))
            if self.command == "GET" and (found := _discovery(server, url.path)) is not None:
                return self._answer(200, found)
            parts = url.path.strip("/").split("/")
            plural, name = (parts[-2], parts[-1]) if self.command != "POST" else (parts[-1], None)
            if self.command == "POST":
                name = body["metadata"]["name"]
                path = f"{url.path}/{name}"
                if path in server.objects:
                    return self._answer(409, status_body(409, "AlreadyExists",
                                                         f'{plural} "{name}" already exists'))
                server.objects[path] = body
                return self._answer(201, body)
            if (plural, name) in server.refuse:
                refusal = server.refuse[(plural, name)]
                return self._answer(refusal["code"], refusal)
            if self.command == "PATCH":
                server.objects[url.path] = body
                return self._answer(200, body)
            if self.command == "GET" and url.path in server.objects:
                return self._answer(200, _ready(server.objects[url.path], server))
            return self._answer(404, status_body(404, "NotFound", f'{plural} "{name}" not found'))

        do_GET = do_PATCH = do_POST = _handle

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    state = ApiServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def cluster(apiserver: ApiServer, tmp_path: Path) -> KubernetesCluster:
    """The real client, configured by a kubeconfig that points at the stub."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": apiserver.url}}],
        "users": [{"name": "stub", "user": {"token": "stub-token"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}]}))
    return KubernetesCluster(kubeconfig=str(kubeconfig))


def run_deploy(cluster: KubernetesCluster) -> tuple[int, str]:
    out = io.StringIO()
    code = deploy(K8S, cluster=cluster, out=out, timeout=30, interval=0.01)
    return code, out.getvalue()


def object_path(obj: dict[str, Any]) -> str:
    """Where the API serves ``obj`` (the path server-side apply must PATCH)."""
    gv, kind, name = obj["apiVersion"], obj["kind"], obj["metadata"]["name"]
    plural, namespaced = next((p, n) for p, k, n in RESOURCES[gv] if k == kind)
    prefix = "/api/v1" if gv == "v1" else f"/apis/{gv}"
    return f"{prefix}/namespaces/{obj['metadata']['namespace']}/{plural}/{name}" if namespaced \
        else f"{prefix}/{plural}/{name}"


def test_deploy_applies_every_object_with_server_side_apply(apiserver: ApiServer, cluster: KubernetesCluster) -> None:
    code, out = run_deploy(cluster)
    assert code == 0, out
    expected = [object_path(o) for o in apply_order(render(K8S))]
    assert [path for path, _ in apiserver.applied()] == expected
    for _, query in apiserver.applied():
        assert query["fieldManager"] == [FIELD_MANAGER] and query["force"] == ["true"]
    assert f"Fractal.ly is up: http://api.{NAMESPACE}.example.com/" in out


def test_deploy_creates_the_missing_secret_before_anything_reads_it(apiserver: ApiServer,
                                                                   cluster: KubernetesCluster) -> None:
    run_deploy(cluster)
    posts = [i for i, (method, *_rest) in enumerate(apiserver.requests) if method == "POST"]
    (post,) = posts
    assert apiserver.requests[post][1] == f"/api/v1/namespaces/{NAMESPACE}/secrets"
    patches = [path for method, path, *_ in apiserver.requests[:post] if method == "PATCH"]
    assert patches == [f"/api/v1/namespaces/{NAMESPACE}"]  # only the namespace came before
    secret = apiserver.objects[f"/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET_NAME}"]
    assert secret["stringData"]["FRACTALLY_S3_SECRET_KEY"]


def test_deploy_keeps_an_existing_secret(apiserver: ApiServer, cluster: KubernetesCluster) -> None:
    mine = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET_NAME, "namespace": NAMESPACE},
            "stringData": {"FRACTALLY_S3_SECRET_KEY": "the operator's own"}}
    apiserver.objects[f"/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET_NAME}"] = mine
    code, out = run_deploy(cluster)
    assert code == 0 and f"kept Secret {NAMESPACE}/{SECRET_NAME}" in out
    assert apiserver.objects[f"/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET_NAME}"] is mine


def test_deploy_shows_the_refusal_and_applies_the_rest(apiserver: ApiServer, cluster: KubernetesCluster) -> None:
    """One immutable Job must not keep the Knative Services from being applied."""
    apiserver.refuse[("jobs", "minio-create-bucket")] = status_body(422, "Invalid", IMMUTABLE_JOB)
    code, out = run_deploy(cluster)
    assert code == 1
    assert f"REFUSED Job {NAMESPACE}/minio-create-bucket: {IMMUTABLE_JOB}" in out
    assert f"kubectl -n {NAMESPACE} delete job minio-create-bucket" in out
    applied = [path for path, _ in apiserver.applied()]
    for name in ("api", "render-tile", "assemble"):
        assert f"/apis/serving.knative.dev/v1/namespaces/{NAMESPACE}/services/{name}" in applied
    assert out.strip().splitlines()[-1].endswith(f"refused 1 object(s), the rest was applied: "
                                                 f"Job {NAMESPACE}/minio-create-bucket")


def test_deploy_names_a_kind_the_cluster_does_not_serve(apiserver: ApiServer, cluster: KubernetesCluster) -> None:
    """Discovery without Knative: each Knative Service is refused with a hint, the rest still applied."""
    del apiserver.groups["serving.knative.dev/v1"]
    code, out = run_deploy(cluster)
    assert code == 1
    assert out.count("this cluster does not know serving.knative.dev/v1 Service (install Knative Serving first)") == 3
    assert f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/fractally-worker" in \
        [path for path, _ in apiserver.applied()]


def test_deploy_stops_at_once_when_the_credentials_are_refused(apiserver: ApiServer, cluster: KubernetesCluster,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """401 refuses everything alike: one line saying so, not one refusal per object."""
    apiserver.unauthorized = True
    code, out = run_deploy(cluster)
    assert code == 2 and "REFUSED" not in out
    assert capsys.readouterr().err.strip() == "fractally: the Kubernetes API answered 401 Unauthorized: Unauthorized"


def test_status_reports_a_service_the_cluster_lacks_as_not_found(apiserver: ApiServer,
                                                                 cluster: KubernetesCluster) -> None:
    """A 404 from the API is "not found" in the table, not an error."""
    run_deploy(cluster)
    del apiserver.objects[f"/apis/serving.knative.dev/v1/namespaces/{NAMESPACE}/services/assemble"]
    out = io.StringIO()
    assert status(K8S, cluster=cluster, out=out) == 1
    line = next(line for line in out.getvalue().splitlines() if line.startswith("assemble"))
    assert "not found" in line
    assert f"http://api.{NAMESPACE}.example.com" in out.getvalue()


def test_status_counts_ready_replicas_of_each_deployment(apiserver: ApiServer, cluster: KubernetesCluster) -> None:
    run_deploy(cluster)
    out = io.StringIO()
    assert status(K8S, cluster=cluster, out=out) == 0
    assert any(line.split() == ["fractally-worker", "1/1"] for line in out.getvalue().splitlines())
