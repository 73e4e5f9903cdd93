"""Kubernetes operations the stages share, over the official ``kubernetes`` client.

Everything goes through a kubeconfig, the same way on EKS and in the sandbox: server-side apply
of rendered manifests (saying whether each object was created, updated or unchanged), waits with
progress for rollouts and Jobs, pod logs, the Secret check that lists keys and never values, GET
through the API server's service proxy (the runbook's port-forward: it needs no local port and
works headless), and deletion that refuses objects the runbook did not label as its own.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from runbook_lib import labels
from runbook_lib.errors import Refusal, TargetError
from runbook_lib.outcome import Outcome
from runbook_lib.progress import Status, wait_for

log = logging.getLogger("runbook_lib.kube")

FIELD_MANAGER = "dbos-runbook"

# apiVersion, kind -> (plural, namespaced)
KINDS = {
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Service"): ("services", True),
    ("v1", "Pod"): ("pods", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "Event"): ("events", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("batch/v1", "Job"): ("jobs", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers", True),
    ("keda.sh/v1alpha1", "ScaledObject"): ("scaledobjects", True),
    ("bitnami.com/v1alpha1", "SealedSecret"): ("sealedsecrets", True),
}


def api_client(kubeconfig: Path):
    """An ApiClient for the cluster the kubeconfig's current context names."""
    from kubernetes import config

    if not Path(kubeconfig).exists():
        raise TargetError(f"no kubeconfig at {kubeconfig}: run the infrastructure stage first")
    return config.new_client_from_config(config_file=str(kubeconfig))


def _path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    try:
        plural, namespaced = KINDS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the runbook does not handle {api_version} {kind}") from None
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespaced:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


def request(api, method: str, path: str, *, body=None, query: dict | None = None,
            content_type: str | None = None, accept: str = "application/json",
            timeout_s: float | None = 30) -> tuple[int, bytes]:
    """One raw API request with the kubeconfig's credentials: (HTTP status, body bytes)."""
    headers = {"Accept": accept}
    if content_type:
        headers["Content-Type"] = content_type
    serialized = api.param_serialize(
        method=method, resource_path=path,
        query_params=list((query or {}).items()) or None,
        header_params=headers, body=body, auth_settings=["BearerToken"],
    )
    response = api.call_api(*serialized, _request_timeout=timeout_s)
    response.read()
    return response.status, response.data or b""


def _call(api, method: str, path: str, *, body=None, query=None, content_type=None):
    status, data = request(api, method, path, body=body, query=query, content_type=content_type)
    if status == 404 and method == "GET":
        return None
    if not 200 <= status < 300:
        raise TargetError(_status_message(status, data))
    return json.loads(data) if data else None


def _status_message(status: int, data: bytes) -> str:
    try:
        body = json.loads(data)
        return f"Kubernetes API {status} {body.get('reason', '')}: {body.get('message', '')}"
    except (TypeError, ValueError):
        return f"Kubernetes API {status}: {data[:200].decode(errors='replace')}"


def _api_message(exc) -> str:
    body = exc.body if isinstance(exc.body, (bytes, str)) else b""
    return _status_message(exc.status, body.encode() if isinstance(body, str) else body)


def get(api, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
    """The object, or None when it does not exist."""
    return _call(api, "GET", _path(api_version, kind, namespace, name))


def list_objects(api, api_version: str, kind: str, namespace: str | None,
                 selector: str | None = None) -> list[dict]:
    query = {"labelSelector": selector} if selector else None
    data = _call(api, "GET", _path(api_version, kind, namespace), query=query)
    return (data or {}).get("items", [])


def describe(obj: dict) -> str:
    kind = obj["kind"]
    ns = obj["metadata"].get("namespace")
    return f"{kind} {ns + '/' if ns else ''}{obj['metadata']['name']}"


def apply(api, manifest: dict, *, dry_run: bool = False) -> Outcome:
    """Server-side apply one manifest; the Outcome says created, updated or found (unchanged)."""
    meta = manifest["metadata"]
    api_version, kind = manifest["apiVersion"], manifest["kind"]
    namespace = meta.get("namespace")
    before = get(api, api_version, kind, namespace, meta["name"])
    query = {"fieldManager": FIELD_MANAGER, "force": "true"}
    if dry_run:
        query["dryRun"] = "All"
    after = _call(api, "PATCH", _path(api_version, kind, namespace, meta["name"]), body=manifest,
                  query=query, content_type="application/apply-patch+yaml")
    if before is None:
        action = "created"
    elif before["metadata"].get("resourceVersion") == after["metadata"].get("resourceVersion"):
        action = "found"
    else:
        action = "updated"
    name = f"{namespace}/{meta['name']}" if namespace else meta["name"]
    return Outcome(kind, name, action, detail="dry run" if dry_run else "")


def apply_all(api, manifests: list[dict]) -> list[Outcome]:
    return [apply(api, m) for m in manifests]


def ensure_namespace(api, name: str, deployment: str) -> Outcome:
    """Create the namespace with our labels, or find it (a namespace made by hand is kept)."""
    existing = get(api, "v1", "Namespace", None, name)
    if existing is not None:
        ours = labels.is_ours_kube(existing["metadata"].get("labels"), deployment)
        return Outcome("Namespace", name, "found",
                       detail="" if ours else "not created by this runbook; cleanup leaves it")
    body = {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels.kube_labels(deployment)}}
    _call(api, "POST", "/api/v1/namespaces", body=body)
    return Outcome("Namespace", name, "created")


def delete(api, api_version: str, kind: str, namespace: str | None, name: str,
           deployment: str, *, wait_s: float = 0) -> Outcome:
    """Delete an object the runbook created; refuse one without our labels; absent is fine."""
    label = f"{namespace}/{name}" if namespace else name
    existing = get(api, api_version, kind, namespace, name)
    if existing is None:
        return Outcome(kind, label, "absent")
    if not labels.is_ours_kube(existing["metadata"].get("labels"), deployment):
        return Outcome(kind, label, "refused", detail="not labelled as created by this runbook")
    _call(api, "DELETE", _path(api_version, kind, namespace, name),
          body={"propagationPolicy": "Foreground" if kind != "Namespace" else "Background"})
    if wait_s:
        wait_for(f"{kind} {label} to be deleted",
                 lambda: Status(get(api, api_version, kind, namespace, name) is None,
                                "deleting"), wait_s, 0.5)
    return Outcome(kind, label, "deleted")


def require_ours(obj: dict | None, deployment: str) -> None:
    if obj is not None and not labels.is_ours_kube(obj["metadata"].get("labels"), deployment):
        raise Refusal(f"{describe(obj)} exists but was not created by this runbook")


# Waits ----------------------------------------------------------------------------------------

def deployment_status(api, namespace: str, name: str) -> Status:
    """Rollout state read the way ``kubectl rollout status`` reads it."""
    obj = get(api, "apps/v1", "Deployment", namespace, name)
    if obj is None:
        return Status(False, "not found")
    spec, status = obj.get("spec", {}), obj.get("status", {})
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 1):
        return Status(False, "waiting for the controller to observe the new spec")
    for cond in status.get("conditions", []):
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Status(False, f"progress deadline exceeded: {cond.get('message', '')}",
                          failed=True)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    state = f"{updated}/{want} updated, {available} available, {total} total"
    done = updated >= want and total <= updated and available >= updated
    return Status(done, state)


def wait_rollout(api, namespace: str, name: str, timeout_s: float) -> Status:
    status = wait_for(f"Deployment {namespace}/{name} rollout",
                      lambda: deployment_status(api, namespace, name), timeout_s, 0.5)
    if status.failed:
        raise TargetError(f"Deployment {namespace}/{name}: {status.state}")
    return status


def job_status(api, namespace: str, name: str) -> Status:
    obj = get(api, "batch/v1", "Job", namespace, name)
    if obj is None:
        return Status(False, "not found")
    status = obj.get("status", {})
    for cond in status.get("conditions", []):
        if cond.get("status") != "True":
            continue
        if cond["type"] == "Complete":
            return Status(True, f"Complete ({status.get('succeeded', 0)} succeeded)")
        if cond["type"] == "Failed":
            return Status(False, f"Failed: {cond.get('reason', '')} {cond.get('message', '')}",
                          failed=True)
    state = (f"active {status.get('active', 0)}, succeeded {status.get('succeeded', 0)}, "
             f"failed {status.get('failed', 0)}")
    return Status(False, state)


class JobLogs:
    """Logs of a Job's pods, kept as the Job runs: a failed Job's pods may be deleted before
    anyone reads them, and a restarted container's earlier runs are only in ``previous``."""

    def __init__(self, api, namespace: str, name: str):
        self.api, self.namespace, self.name = api, namespace, name
        self.texts: dict[str, str] = {}

    def capture(self) -> None:
        for pod in pods(self.api, self.namespace, f"job-name={self.name}"):
            pod_name = pod["metadata"]["name"]
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            if not statuses:
                continue
            text = pod_log(self.api, self.namespace, pod_name)
            if text and not text.startswith("(no log"):
                self.texts[pod_name] = text

    def render(self, tail: int = 40) -> str:
        if not self.texts:
            return f"(no log from the pods of Job {self.namespace}/{self.name})"
        return "\n".join(f"--- {pod} ---\n" + "\n".join(text.rstrip().splitlines()[-tail:])
                         for pod, text in self.texts.items())


def wait_job(api, namespace: str, name: str, timeout_s: float,
             logs: JobLogs | None = None) -> Status:
    """Wait for the Job to complete or fail; keep its pods' logs in ``logs`` as it runs."""

    def check() -> Status:
        status = job_status(api, namespace, name)
        if logs is not None:
            logs.capture()
        return status

    return wait_for(f"Job {namespace}/{name}", check, timeout_s, 0.5)


def job_conditions(api, namespace: str, name: str) -> list[str]:
    obj = get(api, "batch/v1", "Job", namespace, name) or {}
    return [f"{c.get('type')}={c.get('status')} {c.get('reason', '')}: {c.get('message', '')}"
            for c in (obj.get("status") or {}).get("conditions", [])]


def pods(api, namespace: str, selector: str) -> list[dict]:
    return list_objects(api, "v1", "Pod", namespace, selector)


def pod_log(api, namespace: str, pod: str, *, tail: int | None = None,
            container: str | None = None) -> str:
    from kubernetes import client

    core = client.CoreV1Api(api)
    kwargs = {"tail_lines": tail} if tail else {}
    if container:
        kwargs["container"] = container
    try:
        return core.read_namespaced_pod_log(pod, namespace, **kwargs)
    except client.rest.ApiException as exc:
        return f"(no log: {_api_message(exc)})"


def logs_for(api, namespace: str, selector: str, tail: int = 20) -> str:
    """The last lines of every pod matching ``selector``, each under a heading."""
    parts = []
    for pod in pods(api, namespace, selector):
        name = pod["metadata"]["name"]
        parts.append(f"--- {name} ---\n{pod_log(api, namespace, name, tail=tail).rstrip()}")
    return "\n".join(parts) if parts else f"(no pods match {selector})"


def pod_problems(api, namespace: str, selector: str) -> list[str]:
    """Why each matching pod is not ready: waiting reasons, restarts, last exit."""
    lines = []
    for pod in pods(api, namespace, selector):
        name = pod["metadata"]["name"]
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            state = cs.get("state") or {}
            waiting = state.get("waiting") or {}
            last = (cs.get("lastState") or {}).get("terminated") or {}
            parts = [f"pod {name}: ready={cs.get('ready', False)}",
                     f"restarts {cs.get('restartCount', 0)}"]
            if waiting:
                parts.append(f"waiting: {waiting.get('reason', '')} {waiting.get('message', '')}")
            if last:
                parts.append(f"last exit {last.get('exitCode')} ({last.get('reason', '')})")
            lines.append(", ".join(p.strip() for p in parts))
    return lines or [f"no pods match {selector}"]


def secret_keys(api, namespace: str, name: str) -> list[str] | None:
    """The keys a Secret holds (never the values), or None when it does not exist."""
    obj = get(api, "v1", "Secret", namespace, name)
    if obj is None:
        return None
    return sorted((obj.get("data") or {}).keys())


def service_get(api, namespace: str, service: str, port: int | str, path: str,
                query: dict | None = None, timeout_s: float = 10) -> tuple[int, str]:
    """GET ``path`` on a Service through the API server's service proxy: (status, body)."""
    proxy = f"/api/v1/namespaces/{namespace}/services/http:{service}:{port}/proxy/"
    status, data = request(api, "GET", proxy + path.lstrip("/"), query=query, accept="*/*",
                           timeout_s=timeout_s)
    return status, data.decode(errors="replace")


def service_json(api, namespace: str, service: str, port: int | str, path: str,
                 query: dict | None = None) -> dict:
    """GET through the service proxy and parse JSON; TargetError on any non-200 answer."""
    status, body = service_get(api, namespace, service, port, path, query)
    if status != 200:
        raise TargetError(f"GET {path} on Service {namespace}/{service}: HTTP {status}: "
                          f"{body.strip()[:300]}")
    return json.loads(body)


def wait_service(api, namespace: str, service: str, port: int | str, path: str,
                 timeout_s: float) -> tuple[int, str]:
    """Retry ``service_get`` until it answers 200 (endpoints can lag a rollout by a moment)."""
    last: list = [0, ""]

    def check() -> Status:
        last[:] = service_get(api, namespace, service, port, path)
        return Status(last[0] == 200, f"HTTP {last[0]}")

    wait_for(f"Service {namespace}/{service} GET /{path.lstrip('/')}", check, timeout_s, 0.5)
    return last[0], last[1]



