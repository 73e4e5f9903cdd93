"""Server-side printing: the ``meta.k8s.io/v1`` Table that ``kubectl get`` asks for.

kubectl requests ``application/json;as=Table;v=v1;g=meta.k8s.io`` and prints the columns the
server chooses. The columns here are those a real 1.31 server prints for the kinds a deployment
meets (pods, deployments, replica sets, jobs, services, namespaces, secrets, ...); custom
resources get their CRD's ``additionalPrinterColumns`` or NAME and AGE. ``server.py`` uses
:func:`table` for lists, gets and watch events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .resources import ResourceType

Obj = dict[str, Any]
Column = tuple[str, str, int, Callable[[Obj], Any]]  # (name, type, priority, cell)

_NAME_DESC = ("Name must be unique within a namespace. Is required when creating resources, "
              "although some resources may allow a client to request the generation of an "
              "appropriate name automatically.")


def human_duration(seconds: float) -> str:
    """Elapsed time as kubectl prints it: 5s, 3m20s, 47m, 5h12m, 3d4h, 300d, 2y45d."""
    if seconds < -1:
        return "<invalid>"
    seconds = max(int(seconds), 0)
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _since(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - moment).total_seconds())


def _age(obj: Obj) -> str:
    return _since((obj.get("metadata") or {}).get("creationTimestamp"))


def _name(obj: Obj) -> str:
    return (obj.get("metadata") or {}).get("name", "")


def _spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


# -- per-kind cells ------------------------------------------------------------------------------

def _pod_ready(pod: Obj) -> str:
    total = len(_spec(pod).get("containers") or [])
    ready = sum(1 for c in _status(pod).get("containerStatuses") or [] if c.get("ready"))
    return f"{ready}/{total}"


def _pod_status(pod: Obj) -> str:
    status = _status(pod)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated"):
            terminated = state["terminated"]
            reason = terminated.get("reason") or (
                f"Signal:{terminated['signal']}" if terminated.get("signal")
                else f"ExitCode:{terminated.get('exitCode', 0)}")
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _pod_restarts(pod: Obj) -> int:
    return sum(int(c.get("restartCount", 0)) for c in _status(pod).get("containerStatuses") or [])


def _containers(template_spec: Obj) -> tuple[str, str]:
    containers = template_spec.get("containers") or []
    return (",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers))


def _template_spec(obj: Obj) -> Obj:
    return (_spec(obj).get("template") or {}).get("spec") or {}


def _selector(obj: Obj) -> str:
    from .cluster import selector_string

    return selector_string(_spec(obj).get("selector")) or "<none>"


def _job_status(job: Obj) -> str:
    conditions = {c.get("type"): c.get("status") for c in _status(job).get("conditions") or []}
    for kind, label in (("Failed", "Failed"), ("Complete", "Complete"),
                        ("Suspended", "Suspended"), ("FailureTarget", "FailureTarget"),
                        ("SuccessCriteriaMet", "SuccessCriteriaMet")):
        if conditions.get(kind) == "True":
            return label
    return "Running"


def _job_duration(job: Obj) -> str:
    status = _status(job)
    start = status.get("startTime")
    if not start:
        return ""
    try:
        begin = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return ""
    end_text = status.get("completionTime")
    end = datetime.now(UTC)
    if end_text:
        try:
            end = datetime.strptime(end_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            pass
    return human_duration((end - begin).total_seconds())


def _service_ports(svc: Obj) -> str:
    parts = []
    for port in _spec(svc).get("ports") or []:
        text = str(port.get("port"))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        parts.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _external_ip(svc: Obj) -> str:
    spec = _spec(svc)
    kind = spec.get("type", "ClusterIP")
    if kind == "ExternalName":
        return spec.get("externalName", "<none>")
    ingress = ((_status(svc).get("loadBalancer") or {}).get("ingress") or [])
    ips = [i.get("ip") or i.get("hostname") for i in ingress] + list(spec.get("externalIPs") or [])
    if ips:
        return ",".join(i for i in ips if i)
    return "<pending>" if kind == "LoadBalancer" else "<none>"


def _endpoints(ep: Obj) -> str:
    found = []
    for subset in ep.get("subsets") or []:
        ports = [p.get("port") for p in subset.get("ports") or []] or [None]
        for address in subset.get("addresses") or []:
            for port in ports:
                found.append(f"{address.get('ip')}:{port}" if port else address.get("ip"))
    if not found:
        return "<none>"
    shown = ",".join(found[:3])
    return shown + (f" + {len(found) - 3} more..." if len(found) > 3 else "")


def _hpa_targets(hpa: Obj) -> str:
    current = {json.dumps(m.get(m.get("type", "").lower(), {}).get("name") or
                          m.get(m.get("type", "").lower(), {}).get("metric", {}).get("name"))
               : m for m in _status(hpa).get("currentMetrics") or []}
    texts = []
    for metric in _spec(hpa).get("metrics") or []:
        kind = metric.get("type", "")
        body = metric.get(kind[:1].lower() + kind[1:]) or {}
        target = body.get("target") or {}
        name = body.get("name") or (body.get("metric") or {}).get("name")
        seen = current.get(json.dumps(name))
        seen_body = (seen or {}).get(kind[:1].lower() + kind[1:]) or {}
        seen_value = (seen_body.get("current") or {})
        if target.get("type") == "Utilization":
            have = seen_value.get("averageUtilization")
            texts.append(f"{'<unknown>' if have is None else str(have) + '%'}/"
                         f"{target.get('averageUtilization')}%")
        else:
            want = target.get("averageValue") or target.get("value")
            have = seen_value.get("averageValue") or seen_value.get("value")
            texts.append(f"{have if have is not None else '<unknown>'}/{want}"
                         + (" (avg)" if target.get("type") == "AverageValue" else ""))
    return ", ".join(texts) or "<none>"


def _hpa_reference(hpa: Obj) -> str:
    ref = _spec(hpa).get("scaleTargetRef") or {}
    return f"{ref.get('kind')}/{ref.get('name')}"


def _event_object(event: Obj) -> str:
    involved = event.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _event_last_seen(event: Obj) -> str:
    return _since(event.get("lastTimestamp") or event.get("eventTime")
                  or (event.get("metadata") or {}).get("creationTimestamp"))


def _node_status(node: Obj) -> str:
    ready = [c for c in _status(node).get("conditions") or [] if c.get("type") == "Ready"]
    text = "Ready" if ready and ready[0].get("status") == "True" else "NotReady"
    if _spec(node).get("unschedulable"):
        text += ",SchedulingDisabled"
    return text


def _node_roles(node: Obj) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = [k[len(prefix):] for k in (node.get("metadata") or {}).get("labels") or {}
             if k.startswith(prefix)]
    return ",".join(sorted(roles)) or "<none>"


_COLUMNS: dict[tuple[str, str], list[Column]] = {
    ("", "pods"): [
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        ("Restarts", "string", 0, lambda p: str(_pod_restarts(p))),
        ("Age", "string", 0, _age),
        ("IP", "string", 1, lambda p: _status(p).get("podIP") or "<none>"),
        ("Node", "string", 1, lambda p: _spec(p).get("nodeName") or "<none>"),
        ("Nominated Node", "string", 1,
         lambda p: _status(p).get("nominatedNodeName") or "<none>"),
        ("Readiness Gates", "string", 1, lambda p: "<none>"),
    ],
    ("apps", "deployments"): [
        ("Ready", "string", 0, lambda d: f"{_status(d).get('readyReplicas', 0)}/"
                                         f"{_spec(d).get('replicas', 1)}"),
        ("Up-to-date", "integer", 0, lambda d: _status(d).get("updatedReplicas", 0)),
        ("Available", "integer", 0, lambda d: _status(d).get("availableReplicas", 0)),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, lambda d: _containers(_template_spec(d))[0]),
        ("Images", "string", 1, lambda d: _containers(_template_spec(d))[1]),
        ("Selector", "string", 1, _selector),
    ],
    ("apps", "replicasets"): [
        ("Desired", "integer", 0, lambda r: _spec(r).get("replicas", 1)),
        ("Current", "integer", 0, lambda r: _status(r).get("replicas", 0)),
        ("Ready", "integer", 0, lambda r: _status(r).get("readyReplicas", 0)),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, lambda r: _containers(_template_spec(r))[0]),
        ("Images", "string", 1, lambda r: _containers(_template_spec(r))[1]),
        ("Selector", "string", 1, _selector),
    ],
    ("batch", "jobs"): [
        ("Status", "string", 0, _job_status),
        ("Completions", "string", 0, lambda j: f"{_status(j).get('succeeded', 0)}/"
                                               f"{_spec(j).get('completions', 1)}"),
        ("Duration", "string", 0, _job_duration),
        ("Age", "string", 0, _age),
        ("Containers", "string", 1, lambda j: _containers(_template_spec(j))[0]),
        ("Images", "string", 1, lambda j: _containers(_template_spec(j))[1]),
        ("Selector", "string", 1, _selector),
    ],
    ("", "services"): [
        ("Type", "string", 0, lambda s: _spec(s).get("type", "ClusterIP")),
        ("Cluster-IP", "string", 0, lambda s: _spec(s).get("clusterIP") or "<none>"),
        ("External-IP", "string", 0, _external_ip),
        ("Port(s)", "string", 0, _service_ports),
        ("Age", "string", 0, _age),
        ("Selector", "string", 1, lambda s: ",".join(
            f"{k}={v}" for k, v in sorted((_spec(s).get("selector") or {}).items())) or "<none>"),
    ],
    ("", "namespaces"): [
        ("Status", "string", 0, lambda n: _status(n).get("phase", "")),
        ("Age", "string", 0, _age),
    ],
    ("", "secrets"): [
        ("Type", "string", 0, lambda s: s.get("type", "")),
        ("Data", "string", 0, lambda s: str(len(s.get("data") or {}))),
        ("Age", "string", 0, _age),
    ],
    ("", "configmaps"): [
        ("Data", "string", 0, lambda c: str(len(c.get("data") or {})
                                            + len(c.get("binaryData") or {}))),
        ("Age", "string", 0, _age),
    ],
    ("", "serviceaccounts"): [
        ("Secrets", "string", 0, lambda s: str(len(s.get("secrets") or []))),
        ("Age", "string", 0, _age),
    ],
    ("", "endpoints"): [
        ("Endpoints", "string", 0, _endpoints),
        ("Age", "string", 0, _age),
    ],
    ("", "events"): [
        ("Last Seen", "string", 0, _event_last_seen),
        ("Type", "string", 0, lambda e: e.get("type", "")),
        ("Reason", "string", 0, lambda e: e.get("reason", "")),
        ("Object", "string", 0, _event_object),
        ("Message", "string", 0, lambda e: str(e.get("message", "")).strip()),
    ],
    ("", "nodes"): [
        ("Status", "string", 0, _node_status),
        ("Roles", "string", 0, _node_roles),
        ("Age", "string", 0, _age),
        ("Version", "string", 0,
         lambda n: (_status(n).get("nodeInfo") or {}).get("kubeletVersion", "")),
    ],
    ("autoscaling", "horizontalpodautoscalers"): [
        ("Reference", "string", 0, lambda h: _hpa_reference(h)),
        ("Targets", "string", 0, _hpa_targets),
        ("MinPods", "string", 0, lambda h: str(_spec(h).get("minReplicas", 1))),
        ("MaxPods", "string", 0, lambda h: str(_spec(h).get("maxReplicas", ""))),
        ("Replicas", "string", 0, lambda h: str(_status(h).get("currentReplicas", 0))),
        ("Age", "string", 0, _age),
    ],
    ("apiextensions.k8s.io", "customresourcedefinitions"): [
        ("Created At", "date", 0,
         lambda c: (c.get("metadata") or {}).get("creationTimestamp", "")),
    ],
    ("coordination.k8s.io", "leases"): [
        ("Holder", "string", 0, lambda lease: _spec(lease).get("holderIdentity", "")),
        ("Age", "string", 0, _age),
    ],
    ("rbac.authorization.k8s.io", "roles"): [
        ("Created At", "string", 0,
         lambda r: (r.get("metadata") or {}).get("creationTimestamp", "")),
    ],
    ("rbac.authorization.k8s.io", "clusterroles"): [
        ("Created At", "string", 0,
         lambda r: (r.get("metadata") or {}).get("creationTimestamp", "")),
    ],
    ("rbac.authorization.k8s.io", "rolebindings"): [
        ("Role", "string", 0, lambda b: f"{(b.get('roleRef') or {}).get('kind')}/"
                                        f"{(b.get('roleRef') or {}).get('name')}"),
        ("Age", "string", 0, _age),
    ],
    ("rbac.authorization.k8s.io", "clusterrolebindings"): [
        ("Role", "string", 0, lambda b: f"{(b.get('roleRef') or {}).get('kind')}/"
                                        f"{(b.get('roleRef') or {}).get('name')}"),
        ("Age", "string", 0, _age),
    ],
}


def _custom_columns(rt: ResourceType, version: str | None) -> list[Column]:
    spec = (rt.crd or {}).get("spec") or {}
    entry = next((v for v in spec.get("versions") or []
                  if v.get("name") == (version or rt.storage_version)), {})
    columns: list[Column] = []
    for column in entry.get("additionalPrinterColumns") or []:
        path = column.get("jsonPath", "")
        kind = column.get("type", "string")
        getter = _json_path(path)
        if kind == "date":
            def cell(obj: Obj, g: Callable[[Obj], Any] = getter) -> Any:
                value = g(obj)
                return _since(value) if isinstance(value, str) and value else "<unknown>"
        else:
            def cell(obj: Obj, g: Callable[[Obj], Any] = getter) -> Any:
                value = g(obj)
                return "" if value is None else value
        columns.append((column.get("name", ""), kind, column.get("priority", 0), cell))
    if not any(c[0] == "Age" for c in columns):
        columns.append(("Age", "date", 0, _age))
    return columns


def _json_path(path: str) -> Callable[[Obj], Any]:
    """A small JSONPath subset: ``.a.b``, ``.a[0]``, ``.a[?(@.type=="Ready")].status``."""
    steps = re.findall(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_]+)==[\"']([^\"']*)"
                       r"[\"']\)\]", path)

    def get(obj: Obj) -> Any:
        node: Any = obj
        for key, index, filter_key, filter_value in steps:
            if node is None:
                return None
            if key:
                node = node.get(key) if isinstance(node, dict) else None
            elif index:
                node = node[int(index)] if isinstance(node, list) and int(index) < len(node) \
                    else None
            else:
                node = next((i for i in node if isinstance(i, dict)
                             and str(i.get(filter_key)) == filter_value), None) \
                    if isinstance(node, list) else None
        return node

    return get


def columns_for(rt: ResourceType, version: str | None) -> list[Column]:
    if rt.crd is not None:
        return _custom_columns(rt, version)
    return _COLUMNS.get(rt.key, [("Age", "string", 0, _age)])


def table(rt: ResourceType, objects: list[Obj], version: str | None, include: str,
          resource_version: str | None, render: Callable[[Obj], Obj],
          with_columns: bool = True) -> Obj:
    """A Table of ``objects``; ``include`` is the includeObject option (None, Metadata,
    Object); ``render`` turns a stored object into what the client receives."""
    columns = columns_for(rt, version)
    definitions = [{"name": "Name", "type": "string", "format": "name",
                    "description": _NAME_DESC, "priority": 0}]
    definitions += [{"name": name, "type": "string" if kind == "date" and rt.crd is None
                     else kind, "format": "", "description": name, "priority": priority}
                    for name, kind, priority, _ in columns]
    rows = []
    for obj in objects:
        row: Obj = {"cells": [_name(obj)] + [cell(obj) for _, _, _, cell in columns]}
        if include == "Object":
            row["object"] = render(obj)
        elif include != "None":
            row["object"] = partial_metadata(obj)
        rows.append(row)
    result: Obj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"resourceVersion": resource_version} if resource_version
                   else {}, "rows": rows}
    if with_columns:
        result["columnDefinitions"] = definitions
    else:
        result["columnDefinitions"] = None
    return result


def partial_metadata(obj: Obj) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata") or {}}
