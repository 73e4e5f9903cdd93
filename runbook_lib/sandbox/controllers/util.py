"""Small helpers the sandbox controllers share: time stamps, selectors, owners, conditions.

Every controller in this package reads and writes plain Kubernetes JSON (dicts), as a real
controller sees it over HTTP. The helpers here answer the questions they all ask of such objects:
does a label selector match, who owns this object, is this pod ready, what is 25% of 3 replicas.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

# Where the sandbox kubelet publishes a pod's container-port → local-port mapping.
PORTS_ANNOTATION = "sandbox.runbook.dbos.dev/ports"


def now_rfc3339() -> str:
    """The current time as Kubernetes writes a metav1.Time (seconds, UTC, trailing Z)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch for an RFC 3339 time stamp, or None when absent or unreadable."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def key_of(obj: dict) -> tuple[str, str]:
    """The (namespace, name) key a controller queues for ``obj``."""
    m = meta(obj)
    return m.get("namespace", ""), m.get("name", "")


def is_terminating(obj: dict) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def controller_ref(obj: dict) -> dict | None:
    """The ownerReference marked ``controller: true``, if any."""
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owned_by(obj: dict, owner: dict) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == meta(owner).get("uid")


def owner_reference(owner: dict, kind: str, api_version: str) -> dict:
    """A controlling ownerReference pointing at ``owner``, as the built-in controllers write it."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": meta(owner)["name"],
        "uid": meta(owner)["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector_matches(selector: dict | None, labels: dict | None) -> bool:
    """True when a LabelSelector (matchLabels and matchExpressions) selects ``labels``.

    An empty or missing selector selects nothing here, as the workload controllers treat it.
    """
    if not selector:
        return False
    labels = labels or {}
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return False
    for k, v in match_labels.items():
        if labels.get(k) != v:
            return False
    for expr in expressions:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def map_selector_matches(selector: dict | None, labels: dict | None) -> bool:
    """A Service's plain-map selector: every pair must be present; empty selects nothing."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """Resolve an IntOrString such as ``"25%"`` or ``1`` against ``total``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.endswith("%"):
        fraction = float(text[:-1]) * total / 100.0
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(text)


def pod_condition(pod: dict, kind: str) -> dict | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def pod_is_ready(pod: dict) -> bool:
    cond = pod_condition(pod, "Ready")
    return bool(cond and cond.get("status") == "True")


def pod_is_available(pod: dict, min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``min_ready_seconds`` (the Deployment sense of "available")."""
    cond = pod_condition(pod, "Ready")
    if not cond or cond.get("status") != "True":
        return False
    if min_ready_seconds <= 0:
        return True
    since = parse_time(cond.get("lastTransitionTime"))
    return since is not None and since + min_ready_seconds <= now


def pod_is_active(pod: dict) -> bool:
    """Neither finished nor being deleted: what a ReplicaSet or Job counts as one of its own."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_terminating(pod)


def set_condition(conditions: list[dict], kind: str, status: str, reason: str, message: str,
                  now: str, with_update_time: bool = False) -> list[dict]:
    """Return ``conditions`` with one condition set; transition time moves only on a change."""
    result = [dict(c) for c in conditions if c.get("type") != kind]
    old = next((c for c in conditions if c.get("type") == kind), None)
    cond = {"type": kind, "status": status, "reason": reason, "message": message}
    changed = old is None or old.get("status") != status
    cond["lastTransitionTime"] = now if changed else old.get("lastTransitionTime", now)
    if with_update_time:
        same = old is not None and not changed and old.get("reason") == reason \
            and old.get("message") == message
        cond["lastUpdateTime"] = old.get("lastUpdateTime", now) if same else now
    result.append(cond)
    return result


def port_mapping(pod: dict) -> dict[int, int]:
    """The sandbox pod network mapping (container port → local port) from the pod annotation."""
    import json

    raw = (meta(pod).get("annotations") or {}).get(PORTS_ANNOTATION)
    if not raw:
        return {}
    try:
        return {int(k): int(v) for k, v in json.loads(raw).items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def container_port_by_name(pod: dict, name: str) -> int | None:
    """The containerPort number of the port called ``name`` in any container of ``pod``."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == name:
                return port.get("containerPort")
    return None


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_dns_label(text: str) -> bool:
    return bool(_DNS_LABEL.match(text)) and len(text) <= 63
