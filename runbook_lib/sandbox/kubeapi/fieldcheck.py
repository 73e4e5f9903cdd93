"""Unknown fields: dropped with a warning, or refused under ``fieldValidation=Strict``.

A real server decodes built-in objects into typed structs, so fields it does not know vanish
(``Warn``, the default, says so in a ``Warning`` header; ``Strict``, which kubectl sends, fails
the request with 400). Custom resources get the same treatment from their structural schema.
Here the built-in kinds' field lists come from the Kubernetes 1.31 JSON schemas bundled in the
``kubernetes-validate`` package (read lazily, never imported); without that package built-in
objects are accepted as sent. ``cluster.py`` calls :func:`unknown_fields` on every write.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

from .resources import ResourceType

log = logging.getLogger("runbook_lib.sandbox.kubeapi.fieldcheck")

SCHEMA_SET = "v1.31.0-local-strict"
_ROOT_KEEP = ("apiVersion", "kind", "metadata")

_definitions: dict[str, Any] | None = None
_by_gvk: dict[tuple[str, str, str], str] = {}


def _load() -> dict[str, Any]:
    global _definitions
    if _definitions is not None:
        return _definitions
    _definitions = {}
    spec = importlib.util.find_spec("kubernetes_validate")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "kubernetes-json-schema" / SCHEMA_SET / "_definitions.json"
        if path.exists():
            _definitions = json.loads(path.read_text())["$defs"]
            break
    else:
        log.warning("no Kubernetes schemas found; unknown fields of built-in kinds are kept")
    for name, node in _definitions.items():
        for gvk in node.get("x-kubernetes-group-version-kind") or []:
            _by_gvk[(gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))] = name
    return _definitions


def unknown_fields(rt: ResourceType, obj: dict[str, Any], prune: bool) -> list[str]:
    """Paths of fields the kind does not declare (``spec.template.spec.containers[0].x``);
    with ``prune`` they are also removed from ``obj``."""
    found: list[str] = []
    if rt.crd is not None:
        from .schema import version_schema

        version = str(obj.get("apiVersion", "")).rsplit("/", 1)[-1] or None
        root = version_schema(rt, version) or version_schema(rt, None)
        if root:
            _walk(obj, root, "", found, prune, resolve=None, root_level=True)
        return found
    definitions = _load()
    name = _by_gvk.get((rt.group, rt.storage_version, rt.kind))
    if name is None:
        return found
    _walk(obj, definitions[name], "", found, prune, resolve=definitions, root_level=True)
    return found


def _walk(value: Any, schema: dict[str, Any], path: str, found: list[str], prune: bool,
          resolve: dict[str, Any] | None, root_level: bool = False) -> None:
    schema = _deref(schema, resolve)
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        embedded = schema.get("x-kubernetes-embedded-resource")
        for key in list(value):
            where = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                if root_level and resolve is None and key == "metadata":
                    continue
                _walk(value[key], properties[key], where, found, prune, resolve)
            elif isinstance(additional, dict):
                _walk(value[key], additional, where, found, prune, resolve)
            elif (properties is None or additional is True
                  or ((root_level or embedded) and key in _ROOT_KEEP)):
                continue
            else:
                found.append(where)
                if prune:
                    del value[key]
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for n, item in enumerate(value):
                _walk(item, items, f"{path}[{n}]", found, prune, resolve)


def _deref(schema: dict[str, Any], resolve: dict[str, Any] | None) -> dict[str, Any]:
    seen = 0
    while resolve is not None and "$ref" in schema and seen < 20:
        schema = resolve.get(schema["$ref"].rsplit("/", 1)[-1], {})
        seen += 1
    return schema
