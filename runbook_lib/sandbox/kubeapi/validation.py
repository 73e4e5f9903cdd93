"""What the sandbox API server refuses with 422 Invalid, in a real server's words.

Object names (RFC 1123 subdomain for most kinds, RFC 1123 label for namespaces, RFC 1035 label
for services, path segments for RBAC), labels, a handful of required fields a deployment runbook
can get wrong (containers and images, a Deployment's selector matching its template, a Job's
restart policy, a Service's ports, a CRD's names and schema) and the fields real servers keep
immutable. Messages and causes follow the upstream field-error format
(``metadata.name: Invalid value: "X": ...``) so tests and people read them the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from .resources import ResourceType
from .status import ApiError, invalid

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_CONFIG_KEY = r"[-._a-zA-Z0-9]+"

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    f"for validation is '{_SUBDOMAIN}')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    f"used for validation is '{_LABEL}')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    f"'abc-123', regex used for validation is '{_DNS1035}')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')"
)
QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    f"used for validation is '{_QUALIFIED_NAME}')"
)
CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
    f"'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{_CONFIG_KEY}')"
)

Cause = tuple[str, str, str]  # (reason, field, message)


def go_quote(value: Any) -> str:
    """A value as Go's %q / %v prints it in field errors."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value) if isinstance(value, (int, float)) else json.dumps(value)


def _bad(field: str, value: Any, message: str) -> Cause:
    return ("FieldValueInvalid", field, f"Invalid value: {go_quote(value)}: {message}")


def _required(field: str, detail: str = "") -> Cause:
    return ("FieldValueRequired", field, "Required value" + (f": {detail}" if detail else ""))


def name_problems(name: str, rule: str, max_length: int | None = None,
                  field: str = "metadata.name") -> list[Cause]:
    """Problems with an object name under one of the naming rules."""
    causes: list[Cause] = []
    if rule == "path":
        for bad in (".", ".."):
            if name == bad:
                causes.append(_bad(field, name, f"may not be '{bad}'"))
        for bad in ("/", "%"):
            if bad in name:
                causes.append(_bad(field, name, f"may not contain '{bad}'"))
        return causes
    limit = 253 if rule == "subdomain" else 63
    pattern, message = {
        "subdomain": (_SUBDOMAIN, SUBDOMAIN_MSG),
        "label": (_LABEL, LABEL_MSG),
        "dns1035": (_DNS1035, DNS1035_MSG),
    }[rule]
    if len(name) > limit:
        causes.append(_bad(field, name, f"must be no more than {limit} characters"))
    if not re.fullmatch(pattern, name):
        causes.append(_bad(field, name, message))
    if max_length is not None and len(name) > max_length and len(name) <= limit:
        causes.append(_bad(field, name, f"must be no more than {max_length} characters"))
    return causes


def _label_problems(labels: Any, field: str) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(labels, dict):
        return causes
    for key, value in labels.items():
        causes += _qualified_name_problems(key, field)
        if not isinstance(value, str):
            continue
        if len(value) > 63:
            causes.append(_bad(field, value, "must be no more than 63 characters"))
        if not re.fullmatch(_LABEL_VALUE, value):
            causes.append(_bad(field, value, LABEL_VALUE_MSG))
    return causes


def _qualified_name_problems(key: str, field: str) -> list[Cause]:
    causes: list[Cause] = []
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not re.fullmatch(_SUBDOMAIN, prefix)):
        causes.append(_bad(field, key, "prefix part " + SUBDOMAIN_MSG))
    if not name:
        causes.append(_bad(field, key, "name part must be non-empty"))
    elif len(name) > 63 or not re.fullmatch(_QUALIFIED_NAME, name):
        causes.append(_bad(field, key, QUALIFIED_NAME_MSG))
    return causes


def validate(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Raise 422 Invalid when ``obj`` (after defaulting) would be refused by a real server."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    causes: list[Cause] = []
    if not name:
        causes.append(_required("metadata.name", "name or generateName is required"))
    else:
        causes += name_problems(name, rt.name_rule, rt.max_name_length)
    causes += _label_problems(meta.get("labels"), "metadata.labels")
    if isinstance(meta.get("annotations"), dict):
        for key in meta["annotations"]:
            causes += _qualified_name_problems(key, "metadata.annotations")
    check = _KIND_CHECKS.get(rt.key)
    if check:
        causes += check(obj)
    if causes:
        raise invalid(rt.kind, rt.group, name, causes)


def validate_update(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Raise 422 Invalid when ``new`` changes a field that is immutable on a real server."""
    validate(rt, new)
    causes: list[Cause] = []
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    selector_kinds = (("apps", "deployments"), ("apps", "replicasets"), ("batch", "jobs"))
    if rt.key in selector_kinds and old_spec.get("selector") != new_spec.get("selector"):
        causes.append(_bad("spec.selector", new_spec.get("selector"), "field is immutable"))
    if rt.key == ("batch", "jobs") and old_spec.get("template") != new_spec.get("template"):
        causes.append(_bad("spec.template", new_spec.get("template"), "field is immutable"))
    if rt.key == ("", "services"):
        old_ip, new_ip = old_spec.get("clusterIP"), new_spec.get("clusterIP")
        if old_ip and new_ip and old_ip != new_ip:
            causes.append(_bad("spec.clusterIPs[0]", new_ip, "field is immutable"))
    if rt.key in (("", "secrets"), ("", "configmaps")) and old.get("immutable"):
        for fld in ("data", "binaryData", "stringData"):
            if old.get(fld) != new.get(fld):
                causes.append(("FieldValueForbidden", fld,
                               "Forbidden: field is immutable when `immutable` is set"))
    if rt.key == ("", "pods"):
        causes += _pod_update_problems(old_spec, new_spec)
    if causes:
        raise invalid(rt.kind, rt.group, (new.get("metadata") or {}).get("name", ""), causes)


def _pod_update_problems(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """Pods allow only image, activeDeadlineSeconds, tolerations (additions) and a few others
    to change; compare everything else."""

    def mutable_stripped(spec: dict[str, Any]) -> dict[str, Any]:
        spec = json.loads(json.dumps(spec))
        for key in ("containers", "initContainers"):
            for container in spec.get(key) or []:
                container.pop("image", None)
        for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds",
                    "schedulingGates"):
            spec.pop(key, None)
        return spec

    if mutable_stripped(old) != mutable_stripped(new):
        return [("FieldValueForbidden", "spec",
                 ("Forbidden: pod updates may not change fields other than "
                 "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                 "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
                 "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if "
                 "it was previously negative)"))]
    return []


# -- Per-kind checks -----------------------------------------------------------------------------

def _pod_spec_problems(spec: Any, field: str, template: bool = False) -> list[Cause]:
    causes: list[Cause] = []
    if not isinstance(spec, dict):
        return [_required(field)]
    containers = spec.get("containers")
    if not containers:
        causes.append(_required(f"{field}.containers"))
    for key in ("initContainers", "containers"):
        seen: set[str] = set()
        for n, container in enumerate(spec.get(key) or []):
            where = f"{field}.{key}[{n}]"
            if not isinstance(container, dict):
                causes.append(_bad(where, container, "must be an object"))
                continue
            cname = container.get("name")
            if not cname:
                causes.append(_required(f"{where}.name"))
            else:
                causes += name_problems(cname, "label", field=f"{where}.name")
                if cname in seen:
                    causes.append(("FieldValueDuplicate", f"{where}.name",
                                   f"Duplicate value: {go_quote(cname)}"))
                seen.add(cname)
            if not container.get("image") and not template:
                causes.append(_required(f"{where}.image"))
            for p, port in enumerate(container.get("ports") or []):
                number = port.get("containerPort") if isinstance(port, dict) else None
                if not isinstance(number, int) or not 1 <= number <= 65535:
                    causes.append(_bad(f"{where}.ports[{p}].containerPort", number,
                                       "must be between 1 and 65535, inclusive"))
            for e, env in enumerate(container.get("env") or []):
                if not isinstance(env, dict) or not env.get("name"):
                    causes.append(_required(f"{where}.env[{e}].name"))
    policy = spec.get("restartPolicy")
    if policy not in (None, "Always", "OnFailure", "Never"):
        causes.append(("FieldValueNotSupported", f"{field}.restartPolicy",
                       (f'Unsupported value: {go_quote(policy)}: supported values: "Always", '
                       '"OnFailure", "Never"')))
    return causes


def _pod(obj: dict[str, Any]) -> list[Cause]:
    return _pod_spec_problems(obj.get("spec"), "spec")


def _selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    from .selectors import labels_match, selector_from_label_selector

    return labels_match(selector_from_label_selector(selector), labels)


def _workload(obj: dict[str, Any], kind: str) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    if kind != "Job":
        if not selector:
            causes.append(_required("spec.selector"))
        elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
            causes.append(_bad("spec.selector", selector,
                               f"empty selector is invalid for {kind.lower()}"))
    has_terms = bool(selector and (selector.get("matchLabels") or selector.get("matchExpressions")))
    if has_terms and not _selector_matches(selector, labels):
        causes.append(_bad("spec.template.metadata.labels", labels,
                           "`selector` does not match template `labels`"))
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        causes.append(_bad("spec.replicas", replicas,
                           "must be greater than or equal to 0"))
    causes += _pod_spec_problems(template.get("spec"), "spec.template.spec")
    policy = (template.get("spec") or {}).get("restartPolicy", "Always")
    if kind == "Job":
        if policy not in ("OnFailure", "Never"):
            causes.append(_required("spec.template.spec.restartPolicy",
                                    'valid values: "OnFailure", "Never"'))
    elif policy != "Always":
        causes.append(("FieldValueNotSupported", "spec.template.spec.restartPolicy",
                       f'Unsupported value: {go_quote(policy)}: supported values: "Always"'))
    return causes


def _service(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    kind = spec.get("type", "ClusterIP")
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(("FieldValueNotSupported", "spec.type",
                       (f'Unsupported value: {go_quote(kind)}: supported values: "ClusterIP", '
                       '"ExternalName", "LoadBalancer", "NodePort"')))
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(_required("spec.ports"))
    for n, port in enumerate(ports):
        if not isinstance(port, dict):
            continue
        number = port.get("port")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            causes.append(_bad(f"spec.ports[{n}].port", number,
                               "must be between 1 and 65535, inclusive"))
        if len(ports) > 1 and not port.get("name"):
            causes.append(_required(f"spec.ports[{n}].name"))
    return causes


def _config_keys(obj: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    for fld in ("data", "binaryData", "stringData"):
        for key in (obj.get(fld) or {}):
            if len(key) > 253 or not re.fullmatch(_CONFIG_KEY, key):
                causes.append(_bad(f"{fld}[{key}]", key, CONFIG_KEY_MSG))
    return causes


def check_secret_data(obj: dict[str, Any]) -> None:
    """Secret ``data`` must be base64; a real server fails decoding with a 400."""
    for key, value in (obj.get("data") or {}).items():
        try:
            base64.b64decode(value if isinstance(value, str) else "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError(400, "BadRequest",
                           f'Secret in version "v1" cannot be handled as a Secret: illegal '
                           f'base64 data at input byte {_bad_byte(value)}') from exc
        if not isinstance(value, str):
            raise ApiError(400, "BadRequest",
                           'Secret in version "v1" cannot be handled as a Secret: json: cannot '
                           f'unmarshal into Go struct field Secret.data of type []uint8 ({key})')


def _bad_byte(value: Any) -> int:
    text = value if isinstance(value, str) else ""
    for n, ch in enumerate(text):
        if not (ch.isalnum() or ch in "+/="):
            return n
    return max(len(text) - 1, 0)


def _crd(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    causes: list[Cause] = []
    plural = names.get("plural") or ""
    expected = f"{plural}.{group}"
    name = (obj.get("metadata") or {}).get("name", "")
    if name != expected:
        causes.append(_bad("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if not group:
        causes.append(_required("spec.group"))
    elif "." not in group:
        causes.append(_bad("spec.group", group, "should be a domain with at least one dot"))
    if not plural:
        causes.append(_required("spec.names.plural"))
    if not names.get("kind"):
        causes.append(_required("spec.names.kind"))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        causes.append(("FieldValueNotSupported", "spec.scope",
                       (f'Unsupported value: {go_quote(scope or "")}: supported values: '
                       '"Cluster", "Namespaced"')))
    versions = spec.get("versions") or []
    if not versions:
        causes.append(_required("spec.versions"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(_bad("spec.versions", [v.get("name") for v in versions],
                           "must have exactly one version marked as storage version"))
    for n, version in enumerate(versions):
        if not version.get("name"):
            causes.append(_required(f"spec.versions[{n}].name"))
        if not (version.get("schema") or {}).get("openAPIV3Schema"):
            causes.append(_required(f"spec.versions[{n}].schema.openAPIV3Schema",
                                    "schemas are required"))
    return causes


def _hpa(obj: dict[str, Any]) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    ref = spec.get("scaleTargetRef") or {}
    if not ref.get("kind"):
        causes.append(_required("spec.scaleTargetRef.kind"))
    if not ref.get("name"):
        causes.append(_required("spec.scaleTargetRef.name"))
    maximum = spec.get("maxReplicas")
    if not isinstance(maximum, int) or maximum < 1:
        causes.append(_bad("spec.maxReplicas", maximum, "must be greater than or equal to 1"))
    minimum = spec.get("minReplicas")
    if isinstance(minimum, int) and isinstance(maximum, int) and minimum > maximum:
        causes.append(_bad("spec.maxReplicas", maximum,
                           "must be greater than or equal to `minReplicas`"))
    return causes


_KIND_CHECKS = {
    ("", "pods"): _pod,
    ("apps", "deployments"): lambda o: _workload(o, "Deployment"),
    ("apps", "replicasets"): lambda o: _workload(o, "ReplicaSet"),
    ("apps", "statefulsets"): lambda o: _workload(o, "StatefulSet"),
    ("apps", "daemonsets"): lambda o: _workload(o, "DaemonSet"),
    ("batch", "jobs"): lambda o: _workload(o, "Job"),
    ("", "services"): _service,
    ("", "configmaps"): _config_keys,
    ("", "secrets"): _config_keys,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _crd,
    ("autoscaling", "horizontalpodautoscalers"): _hpa,
}


def invalid_finalizers(rt: ResourceType, name: str, added: list[str]) -> ApiError:
    quoted = ", ".join(json.dumps(f) for f in added)
    return invalid(rt.kind, rt.group, name, [(
        "FieldValueForbidden", "metadata.finalizers",
        (f"Forbidden: no new finalizers can be added if the object is being deleted, found new "
        f"finalizers []string{{{quoted}}}"),
    )])


def invalid_scale(name: str, replicas: Any) -> ApiError:
    return invalid("Scale", "autoscaling", name, [
        _bad("spec.replicas", replicas, "must be greater than or equal to 0")])
