"""Create, get, list, replace, the four patch types, delete; server-set metadata; error codes."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from kubernetes import client

from .support import Target, raw_request, status_of, unique


def deployment(name: str, replicas: int = 1, image: str = "nginx:1.25") -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    # No scheduler picks these pods up on a real cluster either.
                    "schedulerName": "conformance-no-scheduler",
                    "containers": [{
                        "name": "web", "image": image,
                        "ports": [{"containerPort": 80}],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    }],
                },
            },
        },
    }


def test_create_get_list_delete(core: client.CoreV1Api, ns: str, target: Target) -> None:
    created = core.create_namespaced_config_map(ns, {
        "metadata": {"name": "one", "labels": {"tier": "a"}}, "data": {"k": "v"}})
    assert created.metadata.name == "one" and created.metadata.namespace == ns
    assert created.data == {"k": "v"}

    fetched = core.read_namespaced_config_map("one", ns)
    assert fetched.metadata.uid == created.metadata.uid

    status, _, data = raw_request(target, "GET", f"/api/v1/namespaces/{ns}/configmaps")
    body = json.loads(data)
    assert status == 200
    assert body["kind"] == "ConfigMapList" and body["apiVersion"] == "v1"
    assert body["metadata"]["resourceVersion"]
    assert "one" in [i["metadata"]["name"] for i in body["items"]]

    core.delete_namespaced_config_map("one", ns)
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_config_map("one", ns)
    assert caught.value.status == 404


def test_create_answers_201(target: Target, ns: str) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "created"}}).encode()
    status, _, data = raw_request(target, "POST", f"/api/v1/namespaces/{ns}/configmaps", body)
    assert status == 201
    assert json.loads(data)["metadata"]["name"] == "created"


def test_server_set_metadata(core: client.CoreV1Api, apps: client.AppsV1Api, ns: str) -> None:
    first = core.create_namespaced_config_map(ns, {"metadata": {"name": "meta"}})
    meta = first.metadata
    assert re.fullmatch(r"[0-9a-f-]{36}", meta.uid)
    assert isinstance(meta.resource_version, str) and meta.resource_version
    assert meta.creation_timestamp is not None
    assert meta.namespace == ns

    # The resourceVersion changes on every write.
    second = core.patch_namespaced_config_map("meta", ns, {"data": {"a": "b"}})
    assert second.metadata.resource_version != meta.resource_version
    assert second.metadata.uid == meta.uid

    # Generation: spec changes only.
    name = unique("gen")
    dep = apps.create_namespaced_deployment(ns, deployment(name))
    assert dep.metadata.generation == 1
    dep = apps.patch_namespaced_deployment(name, ns, {"metadata": {"labels": {"x": "y"}}})
    assert dep.metadata.generation == 1
    dep = apps.patch_namespaced_deployment_status(name, ns, {"status": {"replicas": 0}})
    assert dep.metadata.generation == 1
    dep = apps.patch_namespaced_deployment(name, ns, {"spec": {"replicas": 2}})
    assert dep.metadata.generation == 2


def test_generate_name(core: client.CoreV1Api, ns: str) -> None:
    made = core.create_namespaced_config_map(ns, {"metadata": {"generateName": "gen-"}})
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) > len("gen-")
    other = core.create_namespaced_config_map(ns, {"metadata": {"generateName": "gen-"}})
    assert other.metadata.name != made.metadata.name


def test_replace_and_stale_conflict(core: client.CoreV1Api, ns: str) -> None:
    made = core.create_namespaced_config_map(ns, {"metadata": {"name": "rep"},
                                                  "data": {"a": "1"}})
    body = {"metadata": {"name": "rep", "resourceVersion": made.metadata.resource_version},
            "data": {"b": "2"}}
    replaced = core.replace_namespaced_config_map("rep", ns, body)
    assert replaced.data == {"b": "2"}

    # The same (now stale) resourceVersion again: 409 Conflict.
    with pytest.raises(client.ApiException) as caught:
        core.replace_namespaced_config_map("rep", ns, body)
    assert caught.value.status == 409
    status = status_of(caught.value)
    assert status["reason"] == "Conflict"
    assert "the object has been modified" in status["message"]

    # A patch carrying a stale resourceVersion conflicts too.
    with pytest.raises(client.ApiException) as caught:
        core.patch_namespaced_config_map("rep", ns, {"metadata": {
            "resourceVersion": made.metadata.resource_version}, "data": {"c": "3"}})
    assert caught.value.status == 409


def test_replace_missing_is_404(core: client.CoreV1Api, ns: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        core.replace_namespaced_config_map("absent", ns, {"metadata": {"name": "absent"}})
    assert caught.value.status == 404


def test_already_exists(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "dup"}})
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "dup"}})
    assert caught.value.status == 409
    status = status_of(caught.value)
    assert status["reason"] == "AlreadyExists"
    assert status["message"] == 'configmaps "dup" already exists'
    assert status["details"] == {"name": "dup", "kind": "configmaps"}


def test_not_found_shapes(core: client.CoreV1Api, apps: client.AppsV1Api, ns: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        apps.read_namespaced_deployment("nothing", ns)
    status = status_of(caught.value)
    assert caught.value.status == 404
    assert status["reason"] == "NotFound"
    assert status["message"] == 'deployments.apps "nothing" not found'
    assert status["details"]["group"] == "apps"


def test_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    missing = unique("missing")
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_config_map(missing, {"metadata": {"name": "x"}})
    assert caught.value.status == 404
    assert status_of(caught.value)["message"] == f'namespaces "{missing}" not found'
    # Listing in a missing namespace is simply empty.
    assert core.list_namespaced_config_map(missing).items == []


@pytest.mark.parametrize("name, rule", [
    ("Bad_Name", ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                 "characters, '-' or '.'")),
    ("-leading", "a lowercase RFC 1123 subdomain"),
])
def test_invalid_configmap_names(core: client.CoreV1Api, ns: str, name: str, rule: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_config_map(ns, {"metadata": {"name": name}})
    assert caught.value.status == 422
    status = status_of(caught.value)
    assert status["reason"] == "Invalid"
    assert status["message"].startswith(
        f'ConfigMap "{name}" is invalid: metadata.name: Invalid value: "{name}": {rule}')
    cause = status["details"]["causes"][0]
    assert cause["field"] == "metadata.name" and cause["reason"] == "FieldValueInvalid"


def test_invalid_namespace_and_service_names(core: client.CoreV1Api, ns: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        core.create_namespace({"metadata": {"name": "has.dot"}})
    assert caught.value.status == 422
    assert "a lowercase RFC 1123 label must consist of" in status_of(caught.value)["message"]

    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_service(ns, {"metadata": {"name": "1svc"},
                                            "spec": {"ports": [{"port": 80}]}})
    assert caught.value.status == 422
    assert "a DNS-1035 label must consist of" in status_of(caught.value)["message"]


def test_missing_name_and_required_fields(core: client.CoreV1Api, apps: client.AppsV1Api,
                                          ns: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_config_map(ns, {"metadata": {}})
    assert caught.value.status == 422
    assert "metadata.name: Required value: name or generateName is required" in status_of(
        caught.value)["message"]

    broken = deployment(unique("broken"))
    broken["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(client.ApiException) as caught:
        apps.create_namespaced_deployment(ns, broken)
    assert caught.value.status == 422
    assert "`selector` does not match template `labels`" in status_of(caught.value)["message"]


def test_malformed_body_is_400(target: Target, ns: str) -> None:
    status, _, data = raw_request(target, "POST", f"/api/v1/namespaces/{ns}/configmaps",
                                  b"{not json")
    assert status == 400
    assert json.loads(data)["reason"] == "BadRequest"


def test_unsupported_verb_is_405(target: Target, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "verb"}})
    body = json.dumps({"metadata": {"name": "verb"}}).encode()
    status, _, _ = raw_request(target, "POST", f"/api/v1/namespaces/{ns}/configmaps/verb", body)
    assert status == 405


def test_merge_patch(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "mp", "labels": {"a": "1"}},
                                           "data": {"x": "1", "y": "2"}})
    patched = core.patch_namespaced_config_map(
        "mp", ns, {"metadata": {"labels": {"b": "2"}}, "data": {"x": None, "z": "3"}},
        _content_type="application/merge-patch+json")
    assert patched.data == {"y": "2", "z": "3"}
    assert patched.metadata.labels == {"a": "1", "b": "2"}


def test_json_patch(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "jp"}, "data": {"x": "1"}})
    patched = core.patch_namespaced_config_map("jp", ns, [
        {"op": "add", "path": "/data/y", "value": "2"},
        {"op": "replace", "path": "/data/x", "value": "10"},
        {"op": "test", "path": "/data/y", "value": "2"},
    ])
    assert patched.data == {"x": "10", "y": "2"}
    with pytest.raises(client.ApiException) as caught:
        core.patch_namespaced_config_map("jp", ns, [
            {"op": "test", "path": "/data/x", "value": "nope"}])
    assert caught.value.status == 422


def test_strategic_merge_patch(apps: client.AppsV1Api, ns: str) -> None:
    name = unique("smp")
    apps.create_namespaced_deployment(ns, deployment(name))
    # Containers merge by name, env by name, ports by containerPort.
    patched = apps.patch_namespaced_deployment(name, ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "web", "image": "nginx:1.26",
                        "env": [{"name": "B", "value": "20"}, {"name": "C", "value": "3"}],
                        "ports": [{"containerPort": 8080}]},
                       {"name": "side", "image": "busybox:1.36"}]}}}})
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert set(containers) == {"web", "side"}
    web = containers["web"]
    assert web.image == "nginx:1.26"
    assert {e.name: e.value for e in web.env} == {"A": "1", "B": "20", "C": "3"}
    assert sorted(p.container_port for p in web.ports) == [80, 8080]
    assert patched.metadata.generation == 2

    # $patch: delete removes one element by its key.
    patched = apps.patch_namespaced_deployment(name, ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "side", "$patch": "delete"}]}}}})
    assert [c.name for c in patched.spec.template.spec.containers] == ["web"]


def test_server_side_apply(target: Target, apps: client.AppsV1Api, ns: str) -> None:
    name = unique("ssa")
    manifest = deployment(name)
    manifest["metadata"]["namespace"] = ns
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
    body = yaml.safe_dump(manifest).encode()

    # fieldManager is required for apply.
    status, _, data = raw_request(target, "PATCH", path, body, "application/apply-patch+yaml")
    assert status == 422
    assert "fieldManager: Required value" in json.loads(data)["message"]

    # Apply creates (201), then updates (200) and records the manager.
    status, _, data = raw_request(target, "PATCH", path + "?fieldManager=alice", body,
                                  "application/apply-patch+yaml")
    assert status == 201, data
    manifest["spec"]["replicas"] = 3
    status, _, data = raw_request(target, "PATCH", path + "?fieldManager=alice",
                                  yaml.safe_dump(manifest).encode(),
                                  "application/apply-patch+yaml")
    assert status == 200, data
    applied = json.loads(data)
    assert applied["spec"]["replicas"] == 3
    managers = {(e["manager"], e["operation"]) for e in applied["metadata"]["managedFields"]}
    assert ("alice", "Apply") in managers

    # Another manager setting the same field differently conflicts, unless forced.
    other = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": name, "namespace": ns}, "spec": {"replicas": 5}}
    status, _, data = raw_request(target, "PATCH", path + "?fieldManager=bob",
                                  json.dumps(other).encode(), "application/apply-patch+yaml")
    assert status == 409, data
    conflict = json.loads(data)
    assert conflict["reason"] == "Conflict" and ".spec.replicas" in conflict["message"]
    status, _, data = raw_request(target, "PATCH", path + "?fieldManager=bob&force=true",
                                  json.dumps(other).encode(), "application/apply-patch+yaml")
    assert status == 200, data
    assert apps.read_namespaced_deployment(name, ns).spec.replicas == 5

    # A field the manager no longer applies is removed.
    manifest["spec"].pop("replicas")
    manifest["metadata"]["labels"] = {"app": name, "extra": "yes"}
    raw_request(target, "PATCH", path + "?fieldManager=alice",
                yaml.safe_dump(manifest).encode(), "application/apply-patch+yaml")
    manifest["metadata"]["labels"] = {"app": name}
    status, _, data = raw_request(target, "PATCH", path + "?fieldManager=alice",
                                  yaml.safe_dump(manifest).encode(),
                                  "application/apply-patch+yaml")
    assert status == 200
    assert json.loads(data)["metadata"]["labels"] == {"app": name}


def test_delete_returns_status_or_object(core: client.CoreV1Api, target: Target,
                                         ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "gone"}})
    status, _, data = raw_request(target, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/gone")
    body = json.loads(data)
    assert status == 200
    assert body["kind"] == "Status" and body["status"] == "Success"
    assert body["details"]["name"] == "gone"
    status, _, _ = raw_request(target, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/gone")
    assert status == 404


def test_delete_collection_by_label(core: client.CoreV1Api, ns: str) -> None:
    for n, tier in enumerate(["a", "a", "b"]):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"dc{n}",
                                                            "labels": {"tier": tier}}})
    core.delete_collection_namespaced_config_map(ns, label_selector="tier=a")
    left = {c.metadata.name for c in core.list_namespaced_config_map(
        ns, label_selector="tier").items}
    assert left == {"dc2"}


def test_list_pagination(core: client.CoreV1Api, ns: str) -> None:
    for n in range(5):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"page{n}",
                                                            "labels": {"page": "yes"}}})
    seen: list[str] = []
    token = None
    while True:
        page = core.list_namespaced_config_map(ns, label_selector="page=yes", limit=2,
                                               _continue=token)
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == [f"page{n}" for n in range(5)]


def test_secret_string_data_and_base64(core: client.CoreV1Api, ns: str) -> None:
    secret = core.create_namespaced_secret(ns, {"metadata": {"name": "s"},
                                                "stringData": {"user": "app"}})
    assert secret.data == {"user": "YXBw"} and secret.type == "Opaque"
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_secret(ns, {"metadata": {"name": "bad"},
                                           "data": {"x": "not base64!"}})
    assert caught.value.status == 400
