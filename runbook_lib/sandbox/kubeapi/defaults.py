"""Defaults a real server fills in, so clients and controllers read the objects they expect.

Deployments get their replica count, rollout strategy and history limits, Jobs their backoff
limit and generated selector, Services a cluster IP and target ports, pods and pod templates
their restart policy, DNS policy, grace period, image pull policy and so on; Secrets fold
``stringData`` into ``data``; namespaces get their finalizer, phase and name label. The write
path of the sandbox API server (``cluster.py``) calls :func:`apply_defaults` on every create
and update, as a real server defaults every decoded object.
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

_PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                   "failureThreshold": 3}


class Allocator:
    """Cluster IPs and node ports, handed out in order like a fresh cluster would."""

    def __init__(self) -> None:
        self._next_ip = int(ipaddress.IPv4Address("10.96.0.10"))
        self._next_node_port = 30000
        self._used_ips: set[str] = set()

    def cluster_ip(self) -> str:
        while True:
            self._next_ip += 1
            candidate = str(ipaddress.IPv4Address(self._next_ip))
            if candidate not in self._used_ips:
                self._used_ips.add(candidate)
                return candidate

    def node_port(self) -> int:
        self._next_node_port += 1
        return self._next_node_port


def apply_defaults(key: tuple[str, str], obj: dict[str, Any], allocator: Allocator | None,
                   creating: bool) -> None:
    """Fill in defaults for a built-in kind, in place."""
    handler = _HANDLERS.get(key)
    if handler:
        handler(obj, allocator, creating)


def _container(container: dict[str, Any]) -> None:
    if not isinstance(container, dict):
        return
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    image = container.get("image") or ""
    if "imagePullPolicy" not in container and image:
        tail = image.rsplit("/", 1)[-1]
        tag = tail.split(":", 1)[1] if ":" in tail and "@" not in tail else None
        untagged = tag is None and "@" not in tail
        container["imagePullPolicy"] = "Always" if untagged or tag == "latest" else "IfNotPresent"
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        field_ref = ((env or {}).get("valueFrom") or {}).get("fieldRef")
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if isinstance(probe, dict):
            for k, v in _PROBE_DEFAULTS.items():
                probe.setdefault(k, v)
            if isinstance(probe.get("httpGet"), dict):
                probe["httpGet"].setdefault("path", "/")
                probe["httpGet"].setdefault("scheme", "HTTP")


def _pod_spec(spec: dict[str, Any]) -> None:
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            _container(container)
    for volume in spec.get("volumes") or []:
        if not isinstance(volume, dict):
            continue
        for source in ("secret", "configMap"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 420)


def _template(template: Any) -> None:
    if isinstance(template, dict):
        template.setdefault("metadata", {})
        _pod_spec(template.setdefault("spec", {}))


def _pod(obj: dict[str, Any], _: Allocator | None, creating: bool) -> None:
    spec = obj.setdefault("spec", {})
    _pod_spec(spec)
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", _qos_class(spec))


def _qos_class(spec: dict[str, Any]) -> str:
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    requests = [(c.get("resources") or {}).get("requests") or {} for c in containers]
    limits = [(c.get("resources") or {}).get("limits") or {} for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        lim.get("cpu") and lim.get("memory")
        and req.get("cpu", lim["cpu"]) == lim["cpu"]
        and req.get("memory", lim["memory"]) == lim["memory"]
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _deployment(obj: dict[str, Any], _: Allocator | None, creating: bool) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(spec.get("template"))


def _replicaset(obj: dict[str, Any], _: Allocator | None, creating: bool) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    _template(spec.get("template"))


def _statefulset(obj: dict[str, Any], _: Allocator | None, creating: bool) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("updateStrategy", {"type": "RollingUpdate",
                                       "rollingUpdate": {"partition": 0}})
    _template(spec.get("template"))


def _job(obj: dict[str, Any], _: Allocator | None, creating: bool) -> None:
    spec = obj.setdefault("spec", {})
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.get("template")
    _template(template)
    # The job controller's selector and labels are generated once, at creation.
    if creating and not spec.get("manualSelector"):
        meta = obj.get("metadata") or {}
        uid, name = meta.get("uid"), meta.get("name")
        if uid and name and isinstance(template, dict):
            generated = {"batch.kubernetes.io/controller-uid": uid}
            spec["selector"] = {"matchLabels": dict(generated)}
            labels = template.setdefault("metadata", {}).setdefault("labels", {})
            labels.update({"batch.kubernetes.io/controller-uid": uid,
                           "batch.kubernetes.io/job-name": name,
                           "controller-uid": uid, "job-name": name})


def _cronjob(obj: dict[str, Any], _: Allocator | None, creating: bool) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job_spec = (spec.get("jobTemplate") or {}).get("spec")
    if isinstance(job_spec, dict):
        job_spec.setdefault("backoffLimit", 6)
        _template(job_spec.get("template"))


def _service(obj: dict[str, Any], allocator: Allocator | None, creating: bool) -> None:
    spec = obj.setdefault("spec", {})
    kind = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        if not isinstance(port, dict):
            continue
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
        if kind in ("NodePort", "LoadBalancer") and "nodePort" not in port and allocator:
            port["nodePort"] = allocator.node_port()
    if kind == "ExternalName":
        return
    if creating and not spec.get("clusterIP") and allocator:
        spec["clusterIP"] = allocator.cluster_ip()
    if spec.get("clusterIP"):
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def _secret(obj: dict[str, Any], _: Allocator | None, creating: bool) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = obj.setdefault("data", {}) or {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data


def _namespace(obj: dict[str, Any], _: Allocator | None, creating: bool) -> None:
    name = (obj.get("metadata") or {}).get("name")
    if name:
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = name
    spec = obj.setdefault("spec", {})
    spec.setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def _hpa(obj: dict[str, Any], _: Allocator | None, creating: bool) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        up = behavior.setdefault("scaleUp", {})
        up.setdefault("stabilizationWindowSeconds", 0)
        up.setdefault("selectPolicy", "Max")
        up.setdefault("policies", [{"type": "Pods", "value": 4, "periodSeconds": 15},
                                   {"type": "Percent", "value": 100, "periodSeconds": 15}])
        down = behavior.setdefault("scaleDown", {})
        down.setdefault("stabilizationWindowSeconds", 300)
        down.setdefault("selectPolicy", "Max")
        down.setdefault("policies", [{"type": "Percent", "value": 100, "periodSeconds": 15}])


def _crd(obj: dict[str, Any], _: Allocator | None, creating: bool) -> None:
    spec = obj.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", names["kind"] + "List")
    spec.setdefault("conversion", {"strategy": "None"})


def _service_account(obj: dict[str, Any], _: Allocator | None, creating: bool) -> None:
    return None


_HANDLERS = {
    ("", "pods"): _pod,
    ("", "services"): _service,
    ("", "secrets"): _secret,
    ("", "namespaces"): _namespace,
    ("", "serviceaccounts"): _service_account,
    ("apps", "deployments"): _deployment,
    ("apps", "replicasets"): _replicaset,
    ("apps", "statefulsets"): _statefulset,
    ("apps", "daemonsets"): lambda o, a, c: _template((o.setdefault("spec", {})).get("template")),
    ("batch", "jobs"): _job,
    ("batch", "cronjobs"): _cronjob,
    ("autoscaling", "horizontalpodautoscalers"): _hpa,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _crd,
}
