"""``fractally deploy`` and ``fractally status``: k8s/ applied with the kubernetes Python client.

``kubectl apply -k k8s/`` is the reference deploy; this does the same without kubectl, then waits:

1. **Render** the kustomization ourselves: the files listed under ``resources`` (folders with
   their own kustomization.yaml are followed), the ``namespace`` set on every namespaced object,
   the ``images`` overrides applied to every container. That is the subset of kustomize that
   k8s/ uses; anything else in kustomization.yaml is refused rather than silently ignored.
2. **Apply** each object with server-side apply (create or update, idempotent, like
   ``kubectl apply --server-side``) through the dynamic client, in dependency order: the
   namespace, then config and volumes, then MinIO and NATS, then the Knative Services.
   The Secret ``fractally-secrets`` is not in k8s/ (an apply would put placeholder credentials
   back every time): right after the namespace, it is created with random S3 keys if it does not
   exist, and left alone if it does. An object the API server refuses (say a Job whose pod
   template changed: Jobs are immutable) is reported in the server's own words and the rest is
   applied all the same; the run then fails, naming what was refused.
3. **Wait** until every Knative Service reports the ``Ready`` condition for its current
   generation, then print the api's URL. ``status`` prints each Service's readiness and URL and
   the ready replicas of each Deployment.

What needs a cluster (the apply and the reads) goes through ``Cluster``; ``KubernetesCluster`` is
tested against an API server stub speaking HTTP, the rest of the logic with a fake cluster too.
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
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


#: The Secret the workloads read their credentials from. k8s/ does not contain it; deploy creates it.
SECRET_NAME = "fractally-secrets"


class ManifestError(ValueError):
    """k8s/ cannot be rendered (a missing file, an unsupported kustomize feature)."""


class Refused(Exception):
    """The cluster refused one object; ``message`` is the API server's own explanation."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def api_message(err: Any) -> str:
    """What an API server said in a refusal: the ``message`` of its Status body, else the body or reason."""
    body = getattr(err, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = None
        return str(message or body).strip()[:2000]
    return f"{getattr(err, 'status', '')} {getattr(err, 'reason', '') or ''}".strip()


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

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply; raises ``Refused`` when the API server refuses this object."""

    def create_if_absent(self, obj: dict[str, Any]) -> bool:
        """Create ``obj`` unless it exists (then leave it as it is); True if it was created."""

    def get_knative_service(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class KubernetesCluster:
    """The kubernetes client: kubeconfig (or in-cluster config), server-side apply, reads.

    Its configuration is its own (the client's global default is left alone), and discovery is cached
    for this run only: a cache left by an earlier run could predate Knative's installation.
    """

    def __init__(self, context: str | None = None, kubeconfig: str | None = None) -> None:
        from kubernetes import client, config, dynamic

        configuration = client.Configuration()
        try:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        except config.ConfigException as err:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                raise ManifestError(f"no cluster to talk to: {err} (set KUBECONFIG or --context)") from None
        self._api = client.ApiClient(configuration)
        self._discovery = tempfile.TemporaryDirectory(prefix="fractally-deploy-")
        self._dynamic = dynamic.DynamicClient(self._api, cache_file=f"{self._discovery.name}/discovery.json")
        self._custom = client.CustomObjectsApi(self._api)
        self._apps = client.AppsV1Api(self._api)
        self._ApiException = client.ApiException

    def _resource(self, obj: dict[str, Any]) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self._dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError:
            hint = " (install Knative Serving first)" if obj["apiVersion"] == KNATIVE_API else ""
            raise Refused(f"this cluster does not know {obj['apiVersion']} {obj['kind']}{hint}") from None

    def _refused(self, err: Any) -> Exception:
        """A refusal of this one object, except 401: bad credentials refuse everything, so stop."""
        return err if err.status == 401 else Refused(api_message(err), err.status)

    def apply(self, obj: dict[str, Any]) -> None:
        resource = self._resource(obj)
        resource_ns = obj["metadata"].get("namespace") if resource.namespaced else None
        try:
            self._dynamic.server_side_apply(resource, body=obj, namespace=resource_ns,
                                            field_manager=FIELD_MANAGER, force_conflicts=True)
        except self._ApiException as err:
            raise self._refused(err) from None

    def create_if_absent(self, obj: dict[str, Any]) -> bool:
        resource = self._resource(obj)
        try:
            resource.create(body=obj, namespace=obj["metadata"].get("namespace"), field_manager=FIELD_MANAGER)
        except self._ApiException as err:
            if err.status == 409:  # AlreadyExists: someone's own credentials, keep them
                return False
            raise self._refused(err) from None
        return True

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


def _references_secret(obj: dict[str, Any], name: str) -> bool:
    """Whether a workload reads the Secret ``name`` (envFrom or an env var's secretKeyRef)."""
    for container in _containers(obj):
        if any((source.get("secretRef") or {}).get("name") == name for source in container.get("envFrom", [])):
            return True
        if any(((var.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == name
               for var in container.get("env", [])):
            return True
    return False


def generated_secrets(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``fractally-secrets`` with fresh random S3 keys, once per namespace whose workloads read it.

    The keys are also MinIO's root user (k8s/minio.yaml); FRACTALLY_AUTH_TOKEN is empty (no token
    asked of clients) until the operator sets one.
    """
    namespaces = sorted({o["metadata"].get("namespace") or "default" for o in objects
                         if _references_secret(o, SECRET_NAME)})
    return [{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": SECRET_NAME, "namespace": ns, "labels": {"app.kubernetes.io/part-of": "fractally"}},
             "stringData": {"FRACTALLY_S3_ACCESS_KEY": "fractally-" + secrets.token_hex(4),
                            "FRACTALLY_S3_SECRET_KEY": secrets.token_urlsafe(30),
                            "FRACTALLY_AUTH_TOKEN": ""}}
            for ns in namespaces]


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
    except (ManifestError, Refused) as err:
        print(f"fractally: {err}", file=sys.stderr)
    except Exception as err:
        status_code = getattr(err, "status", None)
        if status_code is None:
            raise
        print(f"fractally: the Kubernetes API answered {status_code} {getattr(err, 'reason', '') or ''}".rstrip()
              + f": {api_message(err)}", file=sys.stderr)
    return 2


def deploy(folder: str | Path = "k8s", context: str | None = None, timeout: float = 600,
           cluster: Cluster | None = None, out: Any = None, **wait_options: Any) -> int:
    """Apply every object of ``folder`` and wait for the Knative Services; 0 when all are Ready."""
    return _reported(lambda: _deploy(folder, context, timeout, cluster, out or sys.stdout, **wait_options))


def _hint(obj: dict[str, Any], message: str) -> str:
    """What to do about a refusal we can explain."""
    if obj["kind"] == "Job" and "immutable" in message:
        ns = obj["metadata"].get("namespace", "default")
        return (f" (a Job cannot be changed once created: `kubectl -n {ns} delete job "
                f"{obj['metadata']['name']}`, then deploy again)")
    return ""


def _create_secret(cluster: Cluster, secret: dict[str, Any], refused: list[str], out: Any) -> None:
    """Create the credentials Secret with random keys unless it exists; never overwrite it."""
    try:
        created = cluster.create_if_absent(secret)
    except Refused as err:
        print(f"REFUSED {_describe(secret)}: {err.message}", file=out)
        refused.append(_describe(secret))
        return
    if created:
        print(f"created {_describe(secret)}: random S3 keys, no auth token (edit it with kubectl to change "
              "them; deploy never overwrites it)", file=out)
    else:
        print(f"kept {_describe(secret)} as it is", file=out)


def _deploy(folder: str | Path, context: str | None, timeout: float, cluster: Cluster | None, out: Any,
            **wait_options: Any) -> int:
    objects = apply_order(render(folder))
    cluster = cluster or KubernetesCluster(context)
    refused: list[str] = []
    services: list[dict[str, Any]] = []
    pending_secrets = generated_secrets(objects)
    for obj in objects:  # namespaces first (apply_order), then the Secret they must hold, then the rest
        if obj["kind"] != "Namespace" and pending_secrets:
            for secret in pending_secrets:
                _create_secret(cluster, secret, refused, out)
            pending_secrets = []
        try:
            cluster.apply(obj)
        except Refused as err:
            print(f"REFUSED {_describe(obj)}: {err.message}{_hint(obj, err.message)}", file=out)
            refused.append(_describe(obj))
            continue
        print(f"applied {_describe(obj)}", file=out)
        if is_knative_service(obj):
            services.append(obj)
    states: list[ServiceState] = []
    if services:
        print(f"waiting up to {timeout:.0f} s for {len(services)} Knative Service(s) to be Ready", file=out)
        states = wait_ready(cluster, services, timeout, **wait_options)
    for state in states:
        print(f"  {state.name:12} {'Ready' if state.ready else 'NOT READY':10} {state.url or '-'}"
              + ("" if state.ready else f"  ({state.reason})"), file=out)
    if refused:
        print(f"fractally deploy: the cluster refused {len(refused)} object(s), the rest was applied: "
              + ", ".join(refused), file=out)
        return 1
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
