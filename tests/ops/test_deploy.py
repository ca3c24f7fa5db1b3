"""The cluster deployment, checked offline: k8s/, stack.yml, the Dockerfiles and fractally deploy.

No Docker engine and no cluster run here, so: every manifest parses; the core kinds validate
against the Kubernetes schema and deserialize into the client's models; the Knative Services and
OpenFaaS functions carry what matters and agree with each other and with the code (images,
settings, ports, probe paths); each Dockerfile parses with Docker's own parser and its command,
run as a plain process, answers its health path; and fractally deploy's rendering, ordering and
readiness logic run against a fake cluster.
"""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from fractally import config
from fractally.config import Settings
from fractally.ops.deploy import (KNATIVE_API, SECRET_NAME, ManifestError, apply_order, deploy, generated_secrets,
                              is_knative_service, render, service_state, status)
from tests.support import dockerfile

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
STACK = ROOT / "stack.yml"
FUNCTIONS = {"api": "api", "render_tile": "render-tile", "assemble": "assemble"}  # folder -> service name
KUBERNETES_VERSION = "1.31"  # the oldest Kubernetes we support; kubernetes-validate ships its schema
HEALTH_PATH = "/healthz"


def rendered() -> list[dict[str, Any]]:
    return render(K8S)


def knative_services() -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered() if is_knative_service(o)}


def core_objects() -> list[dict[str, Any]]:
    return [o for o in rendered() if not is_knative_service(o)]


def stack() -> dict[str, Any]:
    return yaml.safe_load(STACK.read_text())


def settings_read_by_the_code() -> set[str]:
    """Every FRACTALLY_* variable fractally/config.py reads (its PREFIX + "NAME" and helper calls)."""
    source = Path(config.__file__).read_text()
    names = re.findall(r'(?:PREFIX \+ |_int\(env, |_read_secret\(env, )"([A-Z0-9_]+)"', source)
    return {config.PREFIX + n for n in names}


def secret_settings() -> set[str]:
    source = Path(config.__file__).read_text()
    return {config.PREFIX + n for n in re.findall(r'_read_secret\(env, "([A-Z0-9_]+)"', source)}


def container(ksvc: dict[str, Any]) -> dict[str, Any]:
    containers = ksvc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "a Knative Service has one serving container"
    return containers[0]


# -- manifests ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")) + [STACK], ids=lambda p: p.name)
def test_every_manifest_parses(path: Path) -> None:
    """A YAML slip anywhere would stop kubectl or faas-cli; every document must be a mapping."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


def test_kustomization_lists_every_manifest_and_sets_namespace_and_images() -> None:
    """kubectl apply -k deploys only what is listed: no manifest may be left out by mistake."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    objects = rendered()
    assert all(o["metadata"].get("namespace") == "fractally" for o in objects if o["kind"] != "Namespace")
    images = {c["image"] for o in objects for c in _all_containers(o)}
    tags = {r["name"]: r["newTag"] for r in kustomization["images"]}
    for name, tag in tags.items():
        assert f"{name}:{tag}" in images


def _all_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    template = spec.get("template", {}).get("spec", {})
    return template.get("containers", [])


@pytest.mark.parametrize("obj", core_objects(), ids=lambda o: f"{o['kind']}-{o['metadata']['name']}")
def test_core_kinds_validate_against_the_kubernetes_schema(obj: dict[str, Any]) -> None:
    """Strict: an unknown or misspelt field is an error, as the API server's validation would say."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("obj", core_objects(), ids=lambda o: f"{o['kind']}-{o['metadata']['name']}")
def test_core_kinds_deserialize_into_the_client_models_without_losing_fields(obj: dict[str, Any]) -> None:
    """The kubernetes client reads each object into its typed model and writes back the same object."""
    from kubernetes.client import ApiClient

    api = ApiClient()
    model_name = obj["apiVersion"].split("/")[-1].capitalize() + obj["kind"]
    model = api.deserialize(json.dumps(obj), model_name, "application/json")
    assert type(model).__name__ == model_name
    assert api.sanitize_for_serialization(model) == obj


@pytest.mark.parametrize("name", ["api", "render-tile", "assemble"])
def test_knative_pod_spec_validates_as_a_kubernetes_pod(name: str) -> None:
    """Knative's template is a PodSpec: with the port Knative fills in, it must be a valid Pod."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    spec = copy.deepcopy(knative_services()[name]["spec"]["template"]["spec"])
    for knative_field in ("containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds"):
        spec.pop(knative_field, None)
    for c in spec["containers"]:
        for probe in ("readinessProbe", "livenessProbe"):
            c[probe]["httpGet"].setdefault("port", c["ports"][0]["containerPort"])
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name, min_scale", [("api", "1"), ("render-tile", "0"), ("assemble", "0")])
def test_knative_services_carry_scaling_concurrency_timeouts_resources_and_probes(name: str, min_scale: str) -> None:
    """What Knative needs to scale each function (render_tile and assemble to zero) and keep it healthy."""
    ksvc = knative_services()[name]
    assert ksvc["apiVersion"] == KNATIVE_API
    template = ksvc["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == min_scale
    assert int(annotations["autoscaling.knative.dev/max-scale"]) >= 1
    spec = template["spec"]
    assert isinstance(spec["containerConcurrency"], int) and spec["containerConcurrency"] >= 1
    assert 0 < spec["timeoutSeconds"] <= 600  # Knative's default max-revision-timeout-seconds
    c = container(ksvc)
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(c["resources"]["limits"])
    assert c["readinessProbe"]["httpGet"]["path"] == HEALTH_PATH
    assert c["livenessProbe"]["httpGet"]["path"] == HEALTH_PATH
    assert {"configMapRef": {"name": "fractally-config"}} in c["envFrom"]
    assert {"secretRef": {"name": "fractally-secrets"}} in c["envFrom"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    tmp = {m["name"] for m in c["volumeMounts"] if m["mountPath"] == "/tmp"}
    assert tmp and all("emptyDir" in v for v in spec["volumes"] if v["name"] in tmp)


def test_render_tile_takes_one_tile_at_a_time() -> None:
    """One tile uses one core: containerConcurrency 1 with one CPU, so Knative adds pods, not threads."""
    ksvc = knative_services()["render-tile"]
    assert ksvc["spec"]["template"]["spec"]["containerConcurrency"] == 1
    assert container(ksvc)["resources"]["limits"]["cpu"] == "1"


def test_image_names_agree_between_stack_yml_and_k8s() -> None:
    """faas-cli and kubectl must deploy the same images; the worker runs render_tile's image."""
    k8s_images = {name: container(ksvc)["image"] for name, ksvc in knative_services().items()}
    stack_images = {name: fn["image"] for name, fn in stack()["functions"].items()}
    assert stack_images == k8s_images
    (worker,) = [o for o in rendered() if o["metadata"]["name"] == "fractally-worker"]
    assert worker["spec"]["template"]["spec"]["containers"][0]["image"] == k8s_images["render-tile"]


def test_every_setting_the_code_reads_is_set_in_the_configmap_or_secret() -> None:
    """A setting missing from the cluster's config silently falls back to a laptop default."""
    wanted = settings_read_by_the_code()
    assert len(wanted) > 10  # the parse found them
    objects = {o["metadata"]["name"]: o for o in rendered()}
    (secret,) = generated_secrets(rendered())
    configured = set(objects["fractally-config"]["data"]) | set(secret["stringData"])
    assert wanted <= configured, f"not set in k8s/config.yaml: {sorted(wanted - configured)}"
    assert not secret_settings() & set(objects["fractally-config"]["data"]), "secrets belong in the Secret"


def test_no_credentials_are_applied_from_k8s() -> None:
    """A Secret in the kustomization would put its placeholder keys back on every apply."""
    assert not [o for o in rendered() if o["kind"] == "Secret"]


def test_the_generated_secret_holds_random_keys_for_the_namespace_that_reads_it() -> None:
    (first,), (second,) = generated_secrets(rendered()), generated_secrets(rendered())
    assert first["metadata"] == second["metadata"] and first["metadata"]["namespace"] == "fractally"
    assert set(first["stringData"]) == secret_settings()
    assert first["stringData"]["FRACTALLY_S3_SECRET_KEY"] != second["stringData"]["FRACTALLY_S3_SECRET_KEY"]
    assert len(first["stringData"]["FRACTALLY_S3_SECRET_KEY"]) >= 32  # MinIO wants at least 8


def test_worker_manifest_leaves_the_replica_count_to_whoever_scales() -> None:
    """replicas in the manifest would scale the workers back on every apply (KEDA's or a person's count)."""
    (worker,) = [o for o in rendered() if o["metadata"]["name"] == "fractally-worker"]
    assert "replicas" not in worker["spec"]


def test_keda_example_scales_the_worker_on_the_stream_and_consumer_the_code_uses() -> None:
    from fractally.jobs.queue import CONSUMER

    path = K8S / "optional" / "keda-worker.yaml"
    assert path.name not in (K8S / "kustomization.yaml").read_text().split("resources:")[-1]
    (scaled,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    (worker,) = [o for o in rendered() if o["metadata"]["name"] == "fractally-worker"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert scaled["metadata"]["namespace"] == worker["metadata"]["namespace"]
    (trigger,) = scaled["spec"]["triggers"]
    config_map = next(o for o in rendered() if o["metadata"]["name"] == "fractally-config")["data"]
    assert trigger["type"] == "nats-jetstream"
    assert trigger["metadata"]["stream"] == config_map["FRACTALLY_NATS_STREAM"]
    assert trigger["metadata"]["consumer"] == CONSUMER
    (nats,) = [o for o in rendered() if o["kind"] == "Service" and o["metadata"]["name"] == "nats"]
    monitor = next(p["port"] for p in nats["spec"]["ports"] if p["name"] == "monitor")
    assert trigger["metadata"]["natsServerMonitoringEndpoint"] == \
        f"nats.{nats['metadata']['namespace']}.svc.cluster.local:{monitor}"


#: Knative's defaults (config-defaults): the response-start timeout a revision gets when it sets none
#: and its timeoutSeconds is longer, and the ceiling of timeoutSeconds.
KNATIVE_RESPONSE_START_DEFAULT = 300
KNATIVE_MAX_REVISION_TIMEOUT = 600


@pytest.mark.parametrize("name, setting", [("render-tile", "FRACTALLY_HTTP_TIMEOUT"),
                                           ("assemble", "FRACTALLY_ASSEMBLE_TIMEOUT")])
def test_knative_lets_a_call_run_as_long_as_the_invoker_waits(name: str, setting: str) -> None:
    """Knative cuts a request whose first byte has not come within responseStartTimeoutSeconds, which
    defaults to 300 s whenever timeoutSeconds is longer: assemble's 600 s needs both fields."""
    spec = knative_services()[name]["spec"]["template"]["spec"]
    waits = float(next(o for o in rendered() if o["metadata"]["name"] == "fractally-config")["data"][setting])
    timeout = spec["timeoutSeconds"]
    response_start = spec.get("responseStartTimeoutSeconds",
                              KNATIVE_RESPONSE_START_DEFAULT if KNATIVE_RESPONSE_START_DEFAULT < timeout else timeout)
    assert min(timeout, response_start) >= waits
    assert timeout <= KNATIVE_MAX_REVISION_TIMEOUT


@pytest.mark.parametrize("function", ["api", "render-tile", "assemble"])
def test_every_setting_the_code_reads_is_set_in_stack_yml(function: str) -> None:
    """Each OpenFaaS function gets every setting; secrets as *_FILE paths under /var/openfaas/secrets."""
    fn = stack()["functions"][function]
    env = fn["environment"]
    for name in sorted(settings_read_by_the_code()):
        if name in secret_settings():
            if name == "FRACTALLY_AUTH_TOKEN" and function != "api":
                continue  # only the api checks the token
            path = env.get(name + "_FILE", "")
            assert path.startswith("/var/openfaas/secrets/"), f"{function}: {name}_FILE"
            assert Path(path).name in fn["secrets"], f"{function}: secret {Path(path).name} not mounted"
        else:
            assert name in env, f"{function}: {name} not set"


#: What OpenFaaS Community Edition refuses to deploy: Pro's scaling labels, and more than 5 replicas.
OPENFAAS_CE_MAX_REPLICAS = 5
OPENFAAS_PRO_LABELS = {"com.openfaas.scale.zero-duration", "com.openfaas.scale.type", "com.openfaas.scale.target"}


@pytest.mark.parametrize("function", ["api", "render-tile", "assemble"])
def test_stack_yml_deploys_on_openfaas_community_edition(function: str) -> None:
    """CE answers 'not available for Community Edition' to a deploy with Pro labels or scale.max > 5."""
    labels = stack()["functions"][function]["labels"]
    low, high = int(labels["com.openfaas.scale.min"]), int(labels["com.openfaas.scale.max"])
    assert 1 <= low <= high <= OPENFAAS_CE_MAX_REPLICAS
    assert labels.get("com.openfaas.scale.zero", "false") == "false"
    assert not OPENFAAS_PRO_LABELS & set(labels)


@pytest.mark.parametrize("function", ["api", "render-tile", "assemble"])
def test_stack_yml_declares_health_paths_the_apps_serve_and_a_readonly_root(function: str, tmp_path: Path) -> None:
    fn = stack()["functions"][function]
    folder = {v: k for k, v in FUNCTIONS.items()}[function]
    app = _app(folder, tmp_path)
    try:
        for annotation in ("com.openfaas.health.http.path", "com.openfaas.ready.http.path"):
            assert app.test_client().get(fn["annotations"][annotation]).status_code == 200
        assert app.test_client().get("/_/health").status_code == 200  # what CE probes, annotations or not
    finally:
        if "fractally" in app.extensions:
            app.extensions["fractally"].service.close()
    assert fn["readonly_root_filesystem"] is True
    assert {"read_timeout", "write_timeout", "exec_timeout"} <= set(fn["environment"])


def test_the_api_calls_no_more_tiles_at_once_than_render_tile_has_replicas_on_openfaas() -> None:
    functions = stack()["functions"]
    concurrency = int(functions["api"]["environment"]["FRACTALLY_HTTP_CONCURRENCY"])
    assert concurrency <= int(functions["render-tile"]["labels"]["com.openfaas.scale.max"])


def _app(folder: str, tmp_path: Path):
    settings = Settings(store_url=str(tmp_path / "store"), workers=1)
    module = __import__(f"functions.{folder}.app", fromlist=["create_app"])
    return module.create_app(settings)


@pytest.mark.parametrize("folder", sorted(FUNCTIONS))
def test_apps_serve_the_probe_path_and_the_manifests_use_their_port(folder: str, tmp_path: Path) -> None:
    """Probes hit a route the app really has, on the port its image listens on."""
    app = _app(folder, tmp_path)
    rules = {r.rule: r.methods for r in app.url_map.iter_rules()}
    assert "GET" in rules[HEALTH_PATH]
    if folder != "api":
        assert "POST" in rules["/"]  # the function itself
    assert app.test_client().get(HEALTH_PATH).status_code == 200
    if "fractally" in app.extensions:  # the api's service owns thread pools
        app.extensions["fractally"].service.close()
    target = FUNCTIONS[folder]
    port = int(dockerfile.env(target)["PORT"])
    assert int(dockerfile.last(target, "EXPOSE").value[0]) == port
    assert container(knative_services()[FUNCTIONS[folder]])["ports"][0]["containerPort"] == port
    assert port == 8080  # OpenFaaS requires 8080


def test_worker_deployment_probes_the_health_endpoint_the_worker_serves() -> None:
    """The worker's probes must hit the port given to --health-port, where it answers /healthz:
    200 while connected to NATS, 503 otherwise (so a worker cut off from the queue restarts)."""
    from fractally.jobs.queue import serve_health

    (worker,) = [o for o in rendered() if o["metadata"]["name"] == "fractally-worker"]
    c = worker["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    assert args[:2] == ["fractally", "worker"]
    health_port = int(args[args.index("--health-port") + 1])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == HEALTH_PATH
        assert ports[c[probe]["httpGet"]["port"]] == health_port

    class FakeWorker:
        connected = False

    server = serve_health(FakeWorker, "127.0.0.1", 0)  # type: ignore[arg-type]
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}{HEALTH_PATH}"
        assert requests.get(url, timeout=5).status_code == 503
        FakeWorker.connected = True
        assert requests.get(url, timeout=5).status_code == 200
    finally:
        server.shutdown()
        server.server_close()


# -- fractally deploy / status --------------------------------------------------------------


class FakeCluster:
    """Records applies; Knative Services turn Ready after ``ready_after`` polls (never if None)."""

    def __init__(self, ready_after: int | None = 1) -> None:
        self.applied: list[dict[str, Any]] = []
        self.polls = 0
        self.ready_after = ready_after

    def apply(self, obj: dict[str, Any]) -> None:
        self.applied.append(obj)

    def create_if_absent(self, obj: dict[str, Any]) -> bool:
        self.applied.append(obj)
        return True

    def get_knative_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.polls += 1
        ready = self.ready_after is not None and self.polls > self.ready_after * 3
        obj = next(o for o in self.applied if is_knative_service(o) and o["metadata"]["name"] == name)
        return {**obj, "metadata": {**obj["metadata"], "generation": 2},
                "status": {"observedGeneration": 2, "url": f"http://{name}.{namespace}.example.com",
                           "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown",
                                           "reason": None if ready else "RevisionMissing"}]}}

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}


def test_apply_order_puts_the_namespace_first_and_knative_services_last() -> None:
    kinds = [o["kind"] if not is_knative_service(o) else "ksvc" for o in apply_order(rendered())]
    assert kinds[0] == "Namespace"
    assert kinds.index("ConfigMap") < kinds.index("Deployment")
    assert kinds.index("PersistentVolumeClaim") < kinds.index("Deployment")
    assert kinds[-3:] == ["ksvc"] * 3


def test_service_is_ready_only_with_ready_true_for_its_current_generation() -> None:
    ready = {"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "url": "http://x",
                                                       "conditions": [{"type": "Ready", "status": "True"}]}}
    assert service_state(ready, "x").ready
    stale = {**ready, "status": {**ready["status"], "observedGeneration": 2}}
    assert not service_state(stale, "x").ready
    failing = {**ready, "status": {**ready["status"], "conditions": [
        {"type": "Ready", "status": "False", "reason": "RevisionFailed", "message": "image pull backoff"}]}}
    state = service_state(failing, "x")
    assert not state.ready and "image pull backoff" in state.reason
    assert not service_state(None, "x").ready


def test_deploy_applies_everything_waits_for_ready_and_prints_the_api_url() -> None:
    cluster, out = FakeCluster(ready_after=2), io.StringIO()
    code = deploy(K8S, cluster=cluster, out=out, timeout=60, sleep=lambda s: None)
    assert code == 0
    expected = [(o["kind"], o["metadata"]["name"]) for o in apply_order(rendered())]
    expected.insert(1, ("Secret", SECRET_NAME))  # created right after the namespace, before what reads it
    assert [(o["kind"], o["metadata"]["name"]) for o in cluster.applied] == expected
    assert "Fractal.ly is up: http://api.fractally.example.com/" in out.getvalue()


def test_deploy_fails_when_a_service_never_becomes_ready() -> None:
    clock = iter(range(0, 10_000, 10))
    out = io.StringIO()
    code = deploy(K8S, cluster=FakeCluster(ready_after=None), out=out, timeout=30, sleep=lambda s: None,
                  clock=lambda: next(clock))
    assert code == 1
    assert "RevisionMissing" in out.getvalue() and "Fractal.ly is up" not in out.getvalue()


def test_status_prints_each_service_url_and_readiness() -> None:
    cluster = FakeCluster(ready_after=0)
    deploy(K8S, cluster=cluster, out=io.StringIO(), timeout=1, sleep=lambda s: None)
    out = io.StringIO()
    assert status(K8S, cluster=cluster, out=out) == 0
    for name in ("api", "render-tile", "assemble"):
        assert f"http://{name}.fractally.example.com" in out.getvalue()


def test_render_refuses_kustomize_features_it_does_not_implement(tmp_path: Path) -> None:
    """Better a clear refusal than a deploy that silently differs from kubectl apply -k."""
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches:\n  - path: p.yaml\n")
    with pytest.raises(ManifestError, match="patches"):
        render(tmp_path)


def test_render_applies_image_overrides_like_kustomize(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "ghcr.io/fractally/api:0.1.0"}]}}}}))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "namespace": "elsewhere", "resources": ["d.yaml"],
        "images": [{"name": "ghcr.io/fractally/api", "newName": "registry.example.com/api", "newTag": "2"}]}))
    (obj,) = render(tmp_path)
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/api:2"
    assert obj["metadata"]["namespace"] == "elsewhere"

