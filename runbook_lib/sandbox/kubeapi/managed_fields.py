"""Field ownership (``metadata.managedFields``) for server-side apply, kept simply.

Each write records which manager set which fields, in the ``FieldsV1`` shape a real server uses
(``f:spec``, ``k:{"name":"app"}`` for keyed list items, ``v:"x"`` for set members). Server-side
apply uses the records to report conflicts with other managers (unless forced) and to remove
the fields a manager stopped applying. The sandbox API server's write path (``cluster.py``)
calls :func:`record_update` and :func:`apply`.

Simplifications: ownership is tracked per manager name (operation and subresource are recorded
but a manager never conflicts with itself under another operation), list items are keyed by one
field, and the ``time`` of an entry changes only when its field set does.
"""

from __future__ import annotations

import json
from typing import Any

from .patching import PRIMITIVE_SET, apply_merge, clone, merge_key
from .status import ApiError, qualified

Path = tuple[str, ...]

# Metadata the server owns; never part of a manager's field set.
_SERVER_METADATA = frozenset({
    "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
    "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink",
    "generateName",
})
_MISSING = object()


def field_set(obj: dict[str, Any], builtin: bool, *, status_only: bool = False) -> set[Path]:
    """The owned paths of ``obj``: leaves, plus each keyed list item itself."""
    return set(field_values(obj, builtin, status_only=status_only))


def field_values(obj: dict[str, Any], builtin: bool, *,
                 status_only: bool = False) -> dict[Path, Any]:
    """The owned paths of ``obj`` with the value at each (one walk, for cheap diffs)."""
    values: dict[Path, Any] = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if status_only and key != "status":
            continue
        if not status_only and key == "status":
            continue
        if key == "metadata" and isinstance(value, dict):
            for mkey, mvalue in value.items():
                if mkey not in _SERVER_METADATA:
                    _walk(mvalue, ("metadata", mkey), ("f:metadata", "f:" + mkey), builtin,
                          values)
            continue
        _walk(value, (key,), ("f:" + key,), builtin, values)
    return values


def _walk(value: Any, names: tuple[str, ...], path: Path, builtin: bool,
          out: dict[Path, Any]) -> None:
    if isinstance(value, dict):
        if not value:
            out[path] = value
        for key, child in value.items():
            _walk(child, names + (key,), path + ("f:" + key,), builtin, out)
        return
    if isinstance(value, list):
        key = merge_key(names, builtin)
        if key is None or not value:
            out[path] = value
            return
        if key == PRIMITIVE_SET:
            for item in value:
                out[path + ("v:" + _compact(item),)] = item
            return
        for item in value:
            if not isinstance(item, dict) or key not in item:
                out[path] = value
                continue
            element = path + ("k:" + _compact({key: item[key]}),)
            out[element] = item
            for child_key, child in item.items():
                _walk(child, names + (child_key,), element + ("f:" + child_key,), builtin, out)
        return
    out[path] = value


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def value_at(obj: Any, path: Path) -> Any:
    node = obj
    for element in path:
        tag, _, rest = element.partition(":")
        if tag == "f":
            if not isinstance(node, dict) or rest not in node:
                return _MISSING
            node = node[rest]
        elif tag == "k":
            wanted = json.loads(rest)
            if not isinstance(node, list):
                return _MISSING
            node = next(
                (i for i in node if isinstance(i, dict)
                 and all(i.get(k) == v for k, v in wanted.items())),
                _MISSING,
            )
            if node is _MISSING:
                return _MISSING
        elif tag == "v":
            wanted = json.loads(rest)
            if not isinstance(node, list) or wanted not in node:
                return _MISSING
            node = wanted
        else:
            return _MISSING
    return node


def remove_at(obj: dict[str, Any], path: Path) -> None:
    """Remove the field, list item or set member at ``path`` from ``obj`` (in place)."""
    if not path:
        return
    parent = value_at(obj, path[:-1])
    if parent is _MISSING:
        return
    tag, _, rest = path[-1].partition(":")
    if tag == "f" and isinstance(parent, dict):
        parent.pop(rest, None)
    elif tag == "k" and isinstance(parent, list):
        wanted = json.loads(rest)
        parent[:] = [
            i for i in parent
            if not (isinstance(i, dict) and all(i.get(k) == v for k, v in wanted.items()))
        ]
    elif tag == "v" and isinstance(parent, list):
        wanted = json.loads(rest)
        parent[:] = [i for i in parent if i != wanted]


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
        if path and path[-1].startswith("k:"):
            node.setdefault(".", {})
    return tree


def from_fields_v1(tree: Any, prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    if not isinstance(tree, dict):
        return paths
    if (not tree or "." in tree) and prefix:
        paths.add(prefix)
    for key, child in tree.items():
        if key != ".":
            paths |= from_fields_v1(child, prefix + (key,))
    return paths


def readable(path: Path) -> str:
    """A path as a real server prints it in conflict messages: ``.spec.replicas``."""
    out = ""
    for element in path:
        tag, _, rest = element.partition(":")
        if tag == "f":
            out += "." + rest
        elif tag == "k":
            out += "[" + ",".join(f"{k}={_compact(v)}" for k, v in json.loads(rest).items()) + "]"
        elif tag == "v":
            out += f"[={rest}]"
    return out


class _Entries:
    """The managedFields list of one object, as (manager, operation, subresource) -> paths."""

    def __init__(self, obj: dict[str, Any] | None):
        self.entries: list[dict[str, Any]] = []
        self.paths: list[set[Path]] = []
        self._read: list[set[Path] | None] = []  # as read, to reuse unchanged fieldsV1 trees
        for entry in ((obj or {}).get("metadata", {}).get("managedFields") or []):
            if not isinstance(entry, dict) or not entry.get("manager"):
                continue
            self.entries.append(dict(entry))
            paths = from_fields_v1(entry.get("fieldsV1") or {})
            self.paths.append(paths)
            self._read.append(set(paths))

    def find(self, manager: str, operation: str, subresource: str | None) -> int | None:
        for n, entry in enumerate(self.entries):
            if (entry.get("manager"), entry.get("operation"), entry.get("subresource")) == (
                manager, operation, subresource
            ):
                return n
        return None

    def set(self, manager: str, operation: str, subresource: str | None, api_version: str,
            paths: set[Path], now: str) -> None:
        n = self.find(manager, operation, subresource)
        if n is None:
            entry: dict[str, Any] = {"manager": manager, "operation": operation,
                                     "apiVersion": api_version, "time": now,
                                     "fieldsType": "FieldsV1"}
            if subresource:
                entry["subresource"] = subresource
            self.entries.append(entry)
            self.paths.append(set(paths))
            self._read.append(None)
            return
        if self.paths[n] != paths:
            self.entries[n]["time"] = now
        self.entries[n]["apiVersion"] = api_version
        self.paths[n] = set(paths)

    def render(self) -> list[dict[str, Any]]:
        out = []
        for entry, paths, read in zip(self.entries, self.paths, self._read, strict=True):
            if not paths:
                continue
            if read is not None and read == paths and "fieldsV1" in entry:
                out.append(entry)
                continue
            rendered = {k: v for k, v in entry.items() if k != "fieldsV1"}
            rendered["fieldsV1"] = to_fields_v1(paths)
            out.append(rendered)
        return out


def record_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str,
                  api_version: str, builtin: bool, subresource: str | None, now: str,
                  base: list[dict[str, Any]] | None = None) -> None:
    """Record an Update (create, replace or patch) by ``manager`` in ``new`` (in place): the
    manager takes the fields it changed; fields that disappeared leave every manager.
    ``base`` replaces the stored records first (a client may rewrite managedFields)."""
    entries = _Entries({"metadata": {"managedFields": base}} if base is not None else old)
    status_only = subresource == "status"
    new_values = field_values(new, builtin, status_only=status_only)
    old_values = field_values(old, builtin, status_only=status_only) if old else {}
    changed = {p for p, v in new_values.items() if old_values.get(p, _MISSING) != v}
    gone = set(old_values) - set(new_values)
    for n in range(len(entries.paths)):
        entries.paths[n] -= gone
        if entries.entries[n].get("manager") != manager:
            entries.paths[n] -= changed
    mine = entries.find(manager, "Update", subresource)
    current = set(entries.paths[mine]) if mine is not None else set()
    if changed or mine is not None:
        entries.set(manager, "Update", subresource, api_version, (current - gone) | changed, now)
    new.setdefault("metadata", {})["managedFields"] = entries.render()


def apply(current: dict[str, Any] | None, applied: dict[str, Any], manager: str, force: bool,
          api_version: str, builtin: bool, resource: tuple[str, str], now: str,
          subresource: str | None = None) -> dict[str, Any]:
    """Server-side apply of ``applied`` by ``manager`` onto ``current`` (None to create).

    Returns the new object. Raises a 409 Conflict listing the fields other managers own with
    other values, unless ``force`` takes them over."""
    entries = _Entries(current)
    base = clone(current) if current else {}
    applied_values = field_values(applied, builtin, status_only=subresource == "status")
    applied_paths = set(applied_values)
    leaves = {p for p in applied_paths if not p[-1].startswith("k:")}
    base_values = field_values(base, builtin, status_only=subresource == "status")

    # Conflicts: a field another manager owns, set here to a different value.
    conflicts: list[tuple[str, str, Path]] = []
    for n, entry in enumerate(entries.entries):
        if entry.get("manager") == manager or entry.get("subresource") != subresource:
            continue
        for path in sorted(entries.paths[n] & leaves):
            if base_values.get(path, _MISSING) != applied_values[path]:
                conflicts.append((entry["manager"], entry.get("apiVersion", api_version), path))
    if conflicts and not force:
        raise _conflict_error(conflicts, resource, (applied.get("metadata") or {}).get("name"))
    if force:
        for n, entry in enumerate(entries.entries):
            if entry.get("manager") != manager:
                entries.paths[n] -= leaves

    # Merge, then drop what this manager applied before and no longer does, unless shared.
    merged = apply_merge(base, applied, builtin)
    n = entries.find(manager, "Apply", subresource)
    previous = entries.paths[n] if n is not None else set()
    others: set[Path] = set()
    for m in range(len(entries.entries)):
        if m != n:
            others |= entries.paths[m]
    for path in sorted(previous - applied_paths, key=len, reverse=True):
        if path in others or any(o[: len(path)] == path for o in others):
            continue
        remove_at(merged, path)
    entries.set(manager, "Apply", subresource, api_version, applied_paths, now)
    merged.setdefault("metadata", {})["managedFields"] = entries.render()
    return merged


def _conflict_error(conflicts: list[tuple[str, str, Path]], resource: tuple[str, str],
                    name: str | None) -> ApiError:
    group, plural = resource
    count = len(conflicts)
    if count == 1:
        manager, version, path = conflicts[0]
        message = (f'Apply failed with 1 conflict: conflict with "{manager}" using {version}: '
                   f"{readable(path)}")
    else:
        lines = "\n".join(f'- conflict with "{m}" using {v}: {readable(p)}'
                          for m, v, p in conflicts)
        message = f"Apply failed with {count} conflicts:\n{lines}"
    error = ApiError(409, "Conflict", message, name=name, group=group, kind=plural,
                     causes=[{"reason": "FieldManagerConflict",
                              "message": f'conflict with "{m}" using {v}',
                              "field": readable(p)} for m, v, p in conflicts])
    error.resource = qualified(plural, group)
    return error
