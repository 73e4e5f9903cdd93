"""The four patch formats of the Kubernetes API, applied to plain JSON objects.

``application/merge-patch+json`` (RFC 7386), ``application/json-patch+json`` (RFC 6902),
``application/strategic-merge-patch+json`` (lists merged by their patch merge key, with the
``$patch``, ``$retainKeys``, ``$setElementOrder`` and ``$deleteFromPrimitiveList`` directives that
kubectl's client-side apply sends) and the merge half of server-side apply. The sandbox API
server's patch handler calls these; field ownership for apply lives in ``managed_fields.py``.

Which lists merge by key comes from the table below, which follows the built-in types' patch
strategies for the fields a deployment touches. Custom resources get no strategic merge (a real
server answers 415) and their lists are atomic under apply, except in ``metadata``.
"""

from __future__ import annotations

import json
from typing import Any

from .status import ApiError


def clone(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars); faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


# Marker: the list is a set of primitives merged by value.
PRIMITIVE_SET = ""

_CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})

# Field name -> patch merge key, for lists with patchStrategy "merge" in the built-in types.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "taints": "key",
    "addresses": "type",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "podIPs": "ip",
    "hostIPs": "ip",
}


def merge_key(path: tuple[str, ...], builtin: bool) -> str | None:
    """The merge key of the list at ``path`` (field names from the object's root), or
    ``PRIMITIVE_SET`` for a merged list of primitives, or None for an atomic list."""
    if not path:
        return None
    field = path[-1]
    if path == ("metadata", "finalizers"):
        return PRIMITIVE_SET
    if path == ("metadata", "ownerReferences"):
        return "uid"
    if not builtin:
        return None
    if field == "ports":
        if any(p in _CONTAINER_LISTS for p in path[:-1]):
            return "containerPort"
        if path == ("spec", "ports"):
            return "port"
        return None
    return _MERGE_KEYS.get(field)


def _invalid_patch(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


# -- JSON merge patch (RFC 7386) ---------------------------------------------------------------

def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- JSON patch (RFC 6902) -----------------------------------------------------------------------

def json_patch(document: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "json patch must be a list of operations")
    doc = clone(document)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op:
            raise _invalid_patch("json patch operation is missing 'op'")
        kind = op["op"]
        path = op.get("path")
        if not isinstance(path, str):
            raise _invalid_patch(f"json patch {kind} operation is missing 'path'")
        if kind == "add":
            doc = _pointer_add(doc, path, clone(op.get("value")))
        elif kind == "remove":
            doc, _ = _pointer_remove(doc, path, kind)
        elif kind == "replace":
            doc, _ = _pointer_remove(doc, path, kind)
            doc = _pointer_add(doc, path, clone(op.get("value")))
        elif kind == "move":
            doc, value = _pointer_remove(doc, op.get("from", ""), kind)
            doc = _pointer_add(doc, path, value)
        elif kind == "copy":
            value = _pointer_get(doc, op.get("from", ""), kind)
            doc = _pointer_add(doc, path, clone(value))
        elif kind == "test":
            if _pointer_get(doc, path, kind) != op.get("value"):
                raise _invalid_patch(f"testing value {path} failed: test failed")
        else:
            raise _invalid_patch(f"Unexpected kind: {kind}")
    return doc


def _split_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise _invalid_patch(f"JSON pointer must start with '/': {pointer!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


def _parent(doc: Any, parts: list[str], pointer: str, kind: str) -> Any:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise _invalid_patch(
                f"{kind} operation does not apply: doc is missing path: \"{pointer}\""
            )
    return node


def _pointer_get(doc: Any, pointer: str, kind: str) -> Any:
    parts = _split_pointer(pointer)
    if not parts:
        return doc
    parent = _parent(doc, parts, pointer, kind)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise _invalid_patch(f"{kind} operation does not apply: doc is missing path: \"{pointer}\"")


def _pointer_add(doc: Any, pointer: str, value: Any) -> Any:
    parts = _split_pointer(pointer)
    if not parts:
        return value
    parent = _parent(doc, parts, pointer, "add")
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _invalid_patch(f"add operation does not apply: index out of range: {pointer}")
    else:
        raise _invalid_patch(f"add operation does not apply: doc is missing path: \"{pointer}\"")
    return doc


def _pointer_remove(doc: Any, pointer: str, kind: str) -> tuple[Any, Any]:
    parts = _split_pointer(pointer)
    if not parts:
        return None, doc
    parent = _parent(doc, parts, pointer, kind)
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return doc, parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return doc, parent.pop(int(last))
    raise _invalid_patch(
        f"{kind} operation does not apply: doc is missing key: {pointer}"
        if kind != "remove" else f"remove operation does not apply: doc is missing path: "
        f"\"{pointer}\""
    )


# -- Strategic merge patch -----------------------------------------------------------------------

class _Delete:
    """Returned by a map merge that carries ``$patch: delete``."""


_DELETE = _Delete()


def strategic_merge(original: Any, patch: Any, builtin: bool = True) -> Any:
    """Apply a strategic merge patch to ``original`` (not modified) and return the result."""
    if not isinstance(patch, dict):
        raise ApiError(400, "BadRequest", "strategic merge patch must be a JSON object")
    merged = _smp_map(original if isinstance(original, dict) else {}, patch, (), builtin)
    return {} if merged is _DELETE else merged


def _smp_map(original: dict[str, Any] | None, patch: dict[str, Any], path: tuple[str, ...],
             builtin: bool) -> Any:
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip(patch)
    if directive == "delete":
        return _DELETE
    result = dict(original or {})
    orders: dict[str, list[Any]] = {}
    deletions: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value or []
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            deletions[key.split("/", 1)[1]] = value or []
            continue
        if value is None:
            result.pop(key, None)
            continue
        sub = path + (key,)
        if isinstance(value, dict):
            current = result.get(key)
            merged = _smp_map(current if isinstance(current, dict) else None, value, sub, builtin)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(result.get(key), value, sub, builtin)
        else:
            result[key] = value
    for key, values in deletions.items():
        if isinstance(result.get(key), list):
            result[key] = [v for v in result[key] if v not in values]
    for key, order in orders.items():
        if isinstance(result.get(key), list):
            result[key] = _reorder(result[key], order, merge_key(path + (key,), builtin))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(original: Any, patch: list[Any], path: tuple[str, ...], builtin: bool) -> list[Any]:
    key = merge_key(path, builtin)
    if key is None:
        return [_strip(v) for v in patch]
    current = list(original) if isinstance(original, list) else []
    if key == PRIMITIVE_SET:
        for value in patch:
            if value not in current:
                current.append(value)
        return current
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    for item in patch:
        if not isinstance(item, dict):
            current.append(item)
            continue
        index = next(
            (n for n, old in enumerate(current)
             if isinstance(old, dict) and key in item and old.get(key) == item.get(key)),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del current[index]
            continue
        if index is None:
            current.append(_strip(item))
        else:
            merged = _smp_map(current[index], item, path, builtin)
            if merged is _DELETE:
                del current[index]
            else:
                current[index] = merged
    return current


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def identity(item: Any) -> Any:
        if key and isinstance(item, dict):
            return json.dumps(item.get(key), sort_keys=True)
        return json.dumps(item, sort_keys=True)

    position = {identity(o): n for n, o in enumerate(order)}
    ordered = sorted((i for i in items if identity(i) in position),
                     key=lambda i: position[identity(i)])
    rest = [i for i in items if identity(i) not in position]
    return ordered + rest


def _strip(value: Any) -> Any:
    """A deep copy of ``value`` without patch directives."""
    if isinstance(value, dict):
        return {
            k: _strip(v) for k, v in value.items()
            if not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


# -- Server-side apply: the merge ------------------------------------------------------------------

def apply_merge(current: Any, applied: Any, builtin: bool, path: tuple[str, ...] = ()) -> Any:
    """Merge an applied configuration into ``current``: maps key by key, keyed lists item by
    item, everything else replaced. Removal of fields the manager stopped applying is done by
    the caller from the ownership records."""
    if isinstance(applied, dict):
        result = dict(current) if isinstance(current, dict) else {}
        for key, value in applied.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = apply_merge(result.get(key), value, builtin, path + (key,))
        return result
    if isinstance(applied, list):
        key = merge_key(path, builtin)
        if key is None or not isinstance(current, list):
            return clone(applied)
        result = list(current)
        if key == PRIMITIVE_SET:
            for value in applied:
                if value not in result:
                    result.append(value)
            return result
        for item in applied:
            if not isinstance(item, dict):
                continue
            index = next(
                (n for n, old in enumerate(result)
                 if isinstance(old, dict) and old.get(key) == item.get(key)),
                None,
            )
            if index is None:
                result.append(clone(item))
            else:
                result[index] = apply_merge(result[index], item, builtin, path)
        return result
    return clone(applied)
