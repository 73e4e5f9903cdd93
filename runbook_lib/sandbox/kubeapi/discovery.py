"""Discovery documents: ``/version``, ``/api``, ``/apis`` and each group version's resources.

kubectl and client libraries map kinds to URLs from these, so they list every served resource
with its short names, verbs, categories and subresources the way a real server does, including
custom resources as soon as their CRD exists. The sandbox API server's router (``server.py``)
serves what these functions build.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .resources import Registry, ResourceType

SERVER_MAJOR, SERVER_MINOR = "1", "31"

VERSION_INFO = {
    "major": SERVER_MAJOR,
    "minor": SERVER_MINOR,
    "gitVersion": f"v{SERVER_MAJOR}.{SERVER_MINOR}.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T07:28:49Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}

# Subresources that discovery lists, beyond status and scale: (name, kind, verbs, group/version).
_EXTRA_SUBRESOURCES: dict[tuple[str, str], list[tuple[str, str, tuple[str, ...], str | None]]] = {
    ("", "pods"): [
        ("binding", "Binding", ("create",), None),
        ("eviction", "Eviction", ("create",), "policy/v1"),
        ("log", "Pod", ("get",), None),
    ],
    ("", "services"): [
        ("proxy", "ServiceProxyOptions", ("create", "delete", "get", "patch", "update"), None),
    ],
    ("", "namespaces"): [("finalize", "Namespace", ("update",), None)],
}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                        "serverAddress": server_address}],
    }


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    versions = registry.group_versions(group)
    if not versions:
        return None
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = [g for g in (api_group(registry, name) for name in registry.groups()) if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group_doc(registry: Registry, group: str) -> dict[str, Any] | None:
    doc = api_group(registry, group)
    if doc is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **doc}


def resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    resources: list[dict[str, Any]] = []
    for rt in sorted(types, key=lambda r: r.plural):
        resources.append(_resource_entry(rt))
        resources.extend(_subresource_entries(rt))
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _resource_entry(rt: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    digest = hashlib.sha256(f"{rt.group}/{rt.storage_version}/{rt.kind}".encode()).digest()
    import base64

    entry["storageVersionHash"] = base64.b64encode(digest[:8]).decode()
    return entry


def _subresource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    subs: list[tuple[str, str, tuple[str, ...], str | None]] = []
    if "scale" in rt.subresources:
        subs.append(("scale", "Scale", ("get", "patch", "update"), "autoscaling/v1"))
    if "status" in rt.subresources:
        subs.append(("status", rt.kind, ("get", "patch", "update"), None))
    subs += _EXTRA_SUBRESOURCES.get(rt.key, [])
    for name, kind, verbs, group_version in sorted(subs):
        entry: dict[str, Any] = {
            "name": f"{rt.plural}/{name}",
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": kind,
            "verbs": list(verbs),
        }
        if group_version:
            group, version = group_version.split("/")
            entry["group"], entry["version"] = group, version
        entries.append(entry)
    return entries


def root_paths(registry: Registry) -> dict[str, Any]:
    paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]
    for group in registry.groups():
        paths.append(f"/apis/{group}")
        for version in registry.group_versions(group):
            paths.append(f"/apis/{group}/{version}")
    return {"paths": sorted(paths)}


# -- OpenAPI v3 (just enough for kubectl) ----------------------------------------------------------
#
# kubectl asks the OpenAPI v3 documents whether a kind's PATCH operation takes the
# ``fieldValidation`` and ``dryRun`` parameters; when it does, ``kubectl apply`` (client- or
# server-side) leaves validation to the server instead of downloading full schemas. The
# documents below declare those operations and parameters, and no schemas: kubectl then computes
# client-side apply patches from its built-in types, as it does against servers without
# OpenAPI. What would lift this: generating component schemas for the built-in kinds.

_PATCH_PARAMETERS = [
    {"name": name, "in": "query", "description": name, "schema": {"type": kind,
                                                                   "uniqueItems": True}}
    for name, kind in (("dryRun", "string"), ("fieldManager", "string"),
                       ("fieldValidation", "string"), ("force", "boolean"),
                       ("pretty", "string"))
]
_PATCH_BODY_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                     "application/apply-patch+yaml")


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def openapi_v3_document(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    paths: dict[str, Any] = {}
    prefix = "/" + _gv_path(group, version)
    for rt in sorted(types, key=lambda r: r.plural):
        gvk = {"group": group, "version": version, "kind": rt.kind}
        if rt.namespaced:
            item = f"{prefix}/namespaces/{{namespace}}/{rt.plural}/{{name}}"
        else:
            item = f"{prefix}/{rt.plural}/{{name}}"
        operation = {
            "description": f"partially update the specified {rt.kind}",
            "operationId": f"patch{rt.kind}",
            "parameters": _PATCH_PARAMETERS,
            "requestBody": {"content": {t: {"schema": {"type": "object"}}
                                        for t in _PATCH_BODY_TYPES}, "required": True},
            "responses": {"200": {"description": "OK"}, "201": {"description": "Created"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
        }
        paths[item] = {"patch": operation}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION_INFO["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }


def openapi_v3_index(registry: Registry) -> dict[str, Any]:
    index: dict[str, Any] = {}
    versions = [("", "v1")] + [(g, v) for g in registry.groups()
                               for v in registry.group_versions(g)]
    for group, version in versions:
        doc = openapi_v3_document(registry, group, version)
        if doc is None:
            continue
        digest = hashlib.sha256(repr(sorted(doc["paths"])).encode()).hexdigest()[:32].upper()
        path = _gv_path(group, version)
        index[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": index}
