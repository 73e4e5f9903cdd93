"""Structural-schema handling for custom resources: defaults and basic validation.

A real server fills ``default`` values from a CRD's ``openAPIV3Schema`` and rejects values of
the wrong type, missing ``required`` fields and values outside an ``enum``; runbooks that apply
custom resources (a KEDA ScaledObject, a SealedSecret) meet the same outcome here: a wrong type
is a 422. Undeclared fields are pruned before, by ``fieldcheck.py``. Called by ``cluster.py`` on
every write of a custom resource.
"""

from __future__ import annotations

import json
from typing import Any

from .patching import clone
from .resources import ResourceType
from .status import invalid

_ROOT_KEEP = ("apiVersion", "kind", "metadata")
_TYPES = {
    "object": dict, "array": list, "string": str, "boolean": bool,
}


def version_schema(rt: ResourceType, version: str | None) -> dict[str, Any] | None:
    spec = (rt.crd or {}).get("spec") or {}
    for entry in spec.get("versions") or []:
        if entry.get("name") == (version or rt.storage_version):
            return (entry.get("schema") or {}).get("openAPIV3Schema")
    return None


def apply_schema(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Default and validate ``obj`` (in place) against its version's schema. Unknown fields
    were pruned before, by ``fieldcheck``."""
    version = str(obj.get("apiVersion", "")).rsplit("/", 1)[-1] or None
    root = version_schema(rt, version) or version_schema(rt, None)
    if not root:
        return
    for key, value in list(obj.items()):
        props = root.get("properties") or {}
        if key not in _ROOT_KEEP and key in props:
            obj[key] = _walk(value, props[key])
    for key, sub in (root.get("properties") or {}).items():
        if key not in _ROOT_KEEP and key not in obj and "default" in sub:
            obj[key] = _walk(clone(sub["default"]), sub)
    causes: list[tuple[str, str, str]] = []
    _check(obj, root, "", causes, root_level=True)
    if causes:
        meta = obj.get("metadata") or {}
        raise invalid(rt.kind, rt.group, meta.get("name", ""), causes)


def _walk(value: Any, schema: dict[str, Any]) -> Any:
    """Fill defaults below one schema node."""
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        if props is not None:
            for key in list(value):
                if key in props:
                    value[key] = _walk(value[key], props[key])
                elif isinstance(additional, dict):
                    value[key] = _walk(value[key], additional)
            for key, sub in props.items():
                if key not in value and isinstance(sub, dict) and "default" in sub:
                    value[key] = _walk(clone(sub["default"]), sub)
        elif isinstance(additional, dict):
            for key in list(value):
                value[key] = _walk(value[key], additional)
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_walk(item, schema["items"]) for item in value]
    return value


def _check(value: Any, schema: dict[str, Any], path: str,
           causes: list[tuple[str, str, str]], root_level: bool = False) -> None:
    if value is None:
        if not schema.get("nullable") and path:
            causes.append(("FieldValueTypeInvalid", path,
                           (f'Invalid value: "null": {path} in body must be of type '
                           f'{schema.get("type", "object")}: "null"')))
        return
    kind = schema.get("type")
    if kind and not schema.get("x-kubernetes-int-or-string") and not _type_ok(value, kind):
        causes.append(("FieldValueTypeInvalid", path,
                       (f'Invalid value: "{_type_name(value)}": {path} in body must be of type '
                       f'{kind}: "{_type_name(value)}"')))
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"])
        causes.append(("FieldValueNotSupported", path,
                       f"Unsupported value: {json.dumps(value)}: supported values: {allowed}"))
    if isinstance(value, dict):
        for req in schema.get("required") or []:
            if req not in value and not (root_level and req in _ROOT_KEEP):
                where = f"{path}.{req}" if path else req
                causes.append(("FieldValueRequired", where, "Required value"))
        props = schema.get("properties") or {}
        for key, child in value.items():
            if root_level and key in _ROOT_KEEP:
                continue
            sub = props.get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if isinstance(sub, dict):
                _check(child, sub, f"{path}.{key}" if path else key, causes)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for n, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{n}]", causes)


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = _TYPES.get(kind)
    return expected is None or isinstance(value, expected)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
