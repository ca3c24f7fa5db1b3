"""``fractally deploy`` and ``fractally status``: k8s/ applied with the kubernetes Python client.

``kubectl apply -k k8s/`` is the reference deploy; this does the same without kubectl, then waits:

1. **Render** the kustomization ourselves: the files listed under ``resources`` (folders with
   their own kustomization.yaml are followed), the ``namespace`` set on every namespaced object,
   the ``images`` overrides applied to every container. That is the subset of kustomize that
   k8s/ uses; anything else in kustomization.yaml is refused rather than silently ignored.
2. **Apply** each object with server-side apply (create or update, idempotent, like
   ``kubectl apply --server-side``) through the dynamic client, in dependency order: the
   namespace, then config and volumes, then MinIO and NATS, then the Knative Services.
3. **Wait** until every Knative Service reports the ``Ready`` condition for its current
   generation, then print the api's URL. ``status`` prints each Service's readiness and URL and
   the ready replicas of each Deployment.

What needs a cluster (the apply and the reads) goes through ``Cluster``; the tests drive the rest
with a fake one.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import yaml

KNATIVE_API = "serving.knative.dev/v1"
FIELD_MANAGER = "fractally-deploy"
#: Kinds that live outside namespaces (the ``namespace`` field of a kustomization skips them).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                  "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass"}
#: Apply order: what others refer to first. Kinds not listed come last, Knative Services after all.
KIND_ORDER = ["Namespace", "ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim", "Role",
              "RoleBinding", "Service", "Deployment", "StatefulSet", "Job"]
#: kustomization.yaml fields this renderer understands.
SUPPORTED_FIELDS = {"apiVersion", "kind", "namespace", "resources", "images"}
#: Kinds whose pod template holds containers, and where it is.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",), "Deployment": ("spec", "template", "spec"), "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"), "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


class ManifestError(ValueError):
    """k8s/ cannot be rendered (a missing file, an unsupported kustomize feature)."""


# -- rendering ------------------------------------------------------------------------------


def _load_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise ManifestError(f"{path}: every document must be a Kubernetes object with kind and apiVersion")
    return docs


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec inside ``obj`` (a Deployment's template, a Knative Service's template...)."""
    path = ("spec", "template", "spec") if obj.get("apiVersion") == KNATIVE_API and obj["kind"] == "Service" \
        else POD_SPEC_PATHS.get(obj["kind"])
    node: Any = obj
    for key in path or ():
        node = node.get(key) if isinstance(node, dict) else None
    return node if path and isinstance(node, dict) else None


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(obj)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _set_image(image: str, rules: list[dict[str, Any]]) -> str:
    """kustomize's ``images`` rule for one image reference: match the name, replace name/tag/digest."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    else:
        tag = ""
    for rule in rules:
        if rule.get("name") != name:
            continue
        name = rule.get("newName", name)
        if "digest" in rule:
            return f"{name}@{rule['digest']}"
        tag = str(rule.get("newTag", tag))
        return f"{name}:{tag}" if tag else (f"{name}@{digest}" if digest else name)
    return image


def render(folder: str | Path) -> list[dict[str, Any]]:
    """The objects ``kubectl apply -k folder`` would apply, in the kustomization's resource order."""
    folder = Path(folder)
    path = folder / "kustomization.yaml"
    if not path.is_file():
        raise ManifestError(f"{folder} has no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text()) or {}
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise ManifestError(f"{path}: fractally deploy does not support {', '.join(sorted(unknown))}; "
                            "use kubectl apply -k")
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = folder / entry
        if target.is_dir():
            objects.extend(render(target))
        elif target.is_file():
            objects.extend(_load_documents(target))
        else:
            raise ManifestError(f"{path}: resource {entry!r} does not exist")
    namespace = kustomization.get("namespace")
    rules = kustomization.get("images", [])
    for obj in objects:
        if namespace and obj["kind"] not in CLUSTER_SCOPED:
            obj.setdefault("metadata", {})["namespace"] = namespace
        for container in _containers(obj):
            container["image"] = _set_image(container["image"], rules)
    return objects


def is_knative_service(obj: dict[str, Any]) -> bool:
    return obj.get("apiVersion") == KNATIVE_API and obj.get("kind") == "Service"


def apply_order(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects sorted so that what is referred to exists first (stable within a kind)."""
    def rank(obj: dict[str, Any]) -> int:
        if is_knative_service(obj):
            return len(KIND_ORDER) + 1
        return KIND_ORDER.index(obj["kind"]) if obj["kind"] in KIND_ORDER else len(KIND_ORDER)

    return sorted(objects, key=rank)


# -- readiness ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceState:
    """A Knative Service as ``status`` shows it."""

    name: str
    ready: bool
    url: str | None
    reason: str


def service_state(obj: dict[str, Any] | None, name: str) -> ServiceState:
    """Ready only when the ``Ready`` condition is True *for the current generation* (a Service
    being updated still carries the old revision's Ready=True until the controller catches up)."""
    if obj is None:
        return ServiceState(name, False, None, "not found")
    status = obj.get("status") or {}
    url = status.get("url")
    generation = (obj.get("metadata") or {}).get("generation")
    if generation is not None and status.get("observedGeneration") != generation:
        return ServiceState(name, False, url, "waiting for the controller to see the new generation")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return ServiceState(name, True, url, "ready")
            reason = condition.get("reason") or "not ready"
            message = condition.get("message")
            return ServiceState(name, False, url, f"{reason}: {message}" if message else reason)
    return ServiceState(name, False, url, "no Ready condition yet")


class Cluster(Protocol):
    """What deploy and status need from a cluster (a real one: ``KubernetesCluster``)."""

    def apply(self, obj: dict[str, Any]) -> None: ...

    def get_knative_service(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class KubernetesCluster:
    """The kubernetes client: kubeconfig (or in-cluster config), server-side apply, reads."""

    def __init__(self, context: str | None = None) -> None:
        from kubernetes import client, config, dynamic

        try:
            config.load_kube_config(context=context)
        except config.ConfigException as err:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                raise ManifestError(f"no cluster to talk to: {err} (set KUBECONFIG or --context)") from None
        self._api = client.ApiClient()
        self._dynamic = dynamic.DynamicClient(self._api)
        self._custom = client.CustomObjectsApi(self._api)
        self._apps = client.AppsV1Api(self._api)
        self._ApiException = client.ApiException

    def apply(self, obj: dict[str, Any]) -> None:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            resource = self._dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError:
            hint = " (install Knative Serving first)" if obj["apiVersion"] == KNATIVE_API else ""
            raise ManifestError(f"this cluster does not know {obj['apiVersion']} {obj['kind']}{hint}") from None
        resource_ns = obj["metadata"].get("namespace") if resource.namespaced else None
        self._dynamic.server_side_apply(resource, body=obj, namespace=resource_ns,
                                        field_manager=FIELD_MANAGER, force_conflicts=True)

    def get_knative_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._custom.get_namespaced_custom_object("serving.knative.dev", "v1", namespace,
                                                             "services", name)
        except self._ApiException as err:
            if err.status == 404:
                return None
            raise

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._api.sanitize_for_serialization(self._apps.read_namespaced_deployment(name, namespace))
        except self._ApiException as err:
            if err.status == 404:
                return None
            raise


def _describe(obj: dict[str, Any]) -> str:
    ns = obj["metadata"].get("namespace")
    return f"{obj['kind']} {ns + '/' if ns else ''}{obj['metadata']['name']}"


def wait_ready(cluster: Cluster, services: list[dict[str, Any]], timeout: float,
               interval: float = 3.0, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> list[ServiceState]:
    """Poll the Knative Services until all are Ready or ``timeout`` passes; their last states."""
    deadline = clock() + timeout
    while True:
        states = [service_state(cluster.get_knative_service(s["metadata"]["namespace"], s["metadata"]["name"]),
                                s["metadata"]["name"]) for s in services]
        if all(s.ready for s in states) or clock() >= deadline:
            return states
        sleep(interval)


def _reported(run: Callable[[], int]) -> int:
    """Errors a user can act on as one line on stderr and exit status 2, not a traceback."""
    try:
        return run()
    except ManifestError as err:
        print(f"fractally: {err}", file=sys.stderr)
    except Exception as err:
        status_code = getattr(err, "status", None)
        if status_code is None:
            raise
        print(f"fractally: the Kubernetes API answered {status_code} {getattr(err, 'reason', '')}".rstrip(),
              file=sys.stderr)
    return 2


def deploy(folder: str | Path = "k8s", context: str | None = None, timeout: float = 600,
           cluster: Cluster | None = None, out: Any = None, **wait_options: Any) -> int:
    """Apply every object of ``folder`` and wait for the Knative Services; 0 when all are Ready."""
    return _reported(lambda: _deploy(folder, context, timeout, cluster, out or sys.stdout, **wait_options))


def _deploy(folder: str | Path, context: str | None, timeout: float, cluster: Cluster | None, out: Any,
            **wait_options: Any) -> int:
    objects = apply_order(render(folder))
    cluster = cluster or KubernetesCluster(context)
    for obj in objects:
        cluster.apply(obj)
        print(f"applied {_describe(obj)}", file=out)
    services = [o for o in objects if is_knative_service(o)]
    print(f"waiting up to {timeout:.0f} s for {len(services)} Knative Service(s) to be Ready", file=out)
    states = wait_ready(cluster, services, timeout, **wait_options)
    for state in states:
        print(f"  {state.name:12} {'Ready' if state.ready else 'NOT READY':10} {state.url or '-'}"
              + ("" if state.ready else f"  ({state.reason})"), file=out)
    if not all(s.ready for s in states):
        print("fractally deploy: not every Service became Ready; `fractally status` and "
              "`kubectl -n <namespace> describe ksvc` tell why", file=out)
        return 1
    api = next((s for s in states if s.name == "api"), None)
    if api is not None and api.url:
        print(f"\nFractal.ly is up: {api.url}/  (try: curl {api.url}/healthz)", file=out)
    return 0


def status(folder: str | Path = "k8s", context: str | None = None, cluster: Cluster | None = None,
           out: Any = None) -> int:
    """Print each Knative Service's readiness and URL and each Deployment's ready replicas."""
    return _reported(lambda: _status(folder, context, cluster, out or sys.stdout))


def _status(folder: str | Path, context: str | None, cluster: Cluster | None, out: Any) -> int:
    objects = render(folder)
    cluster = cluster or KubernetesCluster(context)
    healthy = True
    print(f"{'SERVICE':14} {'READY':6} URL", file=out)
    for obj in (o for o in objects if is_knative_service(o)):
        state = service_state(cluster.get_knative_service(obj["metadata"]["namespace"], obj["metadata"]["name"]),
                              obj["metadata"]["name"])
        healthy &= state.ready
        print(f"{state.name:14} {'yes' if state.ready else 'no':6} {state.url or '-'}"
              + ("" if state.ready else f"  ({state.reason})"), file=out)
    print(f"\n{'DEPLOYMENT':18} READY", file=out)
    for obj in (o for o in objects if o["kind"] == "Deployment"):
        found = cluster.get_deployment(obj["metadata"]["namespace"], obj["metadata"]["name"])
        wanted = (found or {}).get("spec", {}).get("replicas", 0) or 0
        ready = (found or {}).get("status", {}).get("readyReplicas", 0) or 0
        healthy &= found is not None and ready >= wanted
        print(f"{obj['metadata']['name']:18} {f'{ready}/{wanted}' if found else 'not found'}", file=out)
    return 0 if healthy else 1
