"""Discovery: version, groups, resources with short names, verbs, categories, subresources."""

from __future__ import annotations

import json

import pytest

from .support import Target, raw_request


def get_json(target: Target, path: str) -> dict:
    status, headers, data = raw_request(target, "GET", path)
    assert status == 200, (path, status, data[:300])
    assert headers.get("Content-Type", "").startswith("application/json")
    return json.loads(data)


def test_version(target: Target) -> None:
    info = get_json(target, "/version")
    assert info["major"] == "1" and info["minor"].rstrip("+").isdigit()
    assert info["gitVersion"].startswith("v1.")
    if target.local:
        assert info["minor"] == "31"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/livez"])
def test_health(target: Target, path: str) -> None:
    status, _, data = raw_request(target, "GET", path, accept="*/*")
    assert status == 200 and data.strip() == b"ok"


@pytest.mark.parametrize("path", ["/version/", "/api/", "/apis/", "/api/v1/", "/apis/apps/v1/"])
def test_trailing_slashes(target: Target, path: str) -> None:
    status, _, _ = raw_request(target, "GET", path)
    assert status == 200


def test_core_group(target: Target) -> None:
    versions = get_json(target, "/api")
    assert versions["kind"] == "APIVersions" and "v1" in versions["versions"]
    resources = get_json(target, "/api/v1")
    assert resources["kind"] == "APIResourceList" and resources["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in resources["resources"]}
    for name, kind, short in [("pods", "Pod", "po"), ("services", "Service", "svc"),
                              ("namespaces", "Namespace", "ns"), ("configmaps", "ConfigMap",
                                                                  "cm"),
                              ("serviceaccounts", "ServiceAccount", "sa"),
                              ("events", "Event", "ev"), ("endpoints", "Endpoints", "ep")]:
        assert by_name[name]["kind"] == kind
        assert short in by_name[name]["shortNames"]
    assert by_name["secrets"]["namespaced"] is True
    assert by_name["namespaces"]["namespaced"] is False
    assert "all" in by_name["pods"]["categories"]
    assert {"create", "get", "list", "watch", "patch", "update", "delete"} <= set(
        by_name["pods"]["verbs"])
    assert by_name["pods/log"]["verbs"] == ["get"]
    assert {"get", "patch", "update"} <= set(by_name["pods/status"]["verbs"])
    assert "services/proxy" in by_name


def test_named_groups(target: Target) -> None:
    groups = get_json(target, "/apis")
    assert groups["kind"] == "APIGroupList"
    versions = {g["name"]: [v["version"] for v in g["versions"]] for g in groups["groups"]}
    for group, version in [("apps", "v1"), ("batch", "v1"), ("autoscaling", "v2"),
                           ("apiextensions.k8s.io", "v1"), ("rbac.authorization.k8s.io", "v1"),
                           ("coordination.k8s.io", "v1")]:
        assert version in versions[group], group
    apps = get_json(target, "/apis/apps")
    assert apps["kind"] == "APIGroup" and apps["preferredVersion"]["version"] == "v1"


def test_group_resources(target: Target) -> None:
    apps = {r["name"]: r for r in get_json(target, "/apis/apps/v1")["resources"]}
    assert "deploy" in apps["deployments"]["shortNames"]
    assert "all" in apps["deployments"]["categories"]
    scale = apps["deployments/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert "deployments/status" in apps and "replicasets/scale" in apps
    assert "rs" in apps["replicasets"]["shortNames"]
    batch = {r["name"]: r for r in get_json(target, "/apis/batch/v1")["resources"]}
    assert "jobs/status" in batch
    hpa = {r["name"]: r for r in get_json(target, "/apis/autoscaling/v2")["resources"]}
    assert "hpa" in hpa["horizontalpodautoscalers"]["shortNames"]
    crd = {r["name"]: r for r in get_json(target, "/apis/apiextensions.k8s.io/v1")["resources"]}
    assert "crd" in crd["customresourcedefinitions"]["shortNames"]
    assert crd["customresourcedefinitions"]["namespaced"] is False
    rbac = {r["name"] for r in get_json(target, "/apis/rbac.authorization.k8s.io/v1")
            ["resources"]}
    assert {"roles", "rolebindings", "clusterroles", "clusterrolebindings"} <= rbac
    leases = {r["name"] for r in get_json(target, "/apis/coordination.k8s.io/v1")["resources"]}
    assert "leases" in leases


def test_unknown_paths_are_404(target: Target) -> None:
    for path in ["/apis/nonexistent.example.com/v1", "/api/v1/nonexistents",
                 "/apis/apps/v1/namespaces/default/nonexistents"]:
        status, _, _data = raw_request(target, "GET", path)
        assert status == 404, path
