"""CustomResourceDefinitions: discovery, conditions, custom resources before and after."""

from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client

from .support import (
    Crd,
    Target,
    crd_manifest,
    eventually,
    raw_request,
    status_of,
    wait_established,
    wait_served,
)


def test_custom_resources_need_their_crd(target: Target, custom: client.CustomObjectsApi,
                                         extensions: client.ApiextensionsV1Api, ns: str) -> None:
    group = f"{uuid.uuid4().hex[:8]}.conformance.example.com"
    body = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "early"}}
    with pytest.raises(client.ApiException) as caught:
        custom.create_namespaced_custom_object(group, "v1", ns, "widgets", body)
    assert caught.value.status == 404
    status, _, _ = raw_request(target, "GET", f"/apis/{group}/v1")
    assert status == 404

    manifest = crd_manifest(group)
    made = extensions.create_custom_resource_definition(manifest)
    name = made.metadata.name
    try:
        wait_established(extensions, name)
        conditions = {c.type: c.status for c in
                      extensions.read_custom_resource_definition(name).status.conditions}
        assert conditions["NamesAccepted"] == "True" and conditions["Established"] == "True"
        wait_served(target, f"/apis/{group}/v1", "widgets")

        # Discovery: the group, its version and the resource with names and scope.
        _, _, data = raw_request(target, "GET", "/apis")
        groups = {g["name"]: g for g in json.loads(data)["groups"]}
        assert groups[group]["preferredVersion"]["version"] == "v1"
        _, _, data = raw_request(target, "GET", f"/apis/{group}/v1")
        resources = {r["name"]: r for r in json.loads(data)["resources"]}
        widgets = resources["widgets"]
        assert widgets["kind"] == "Widget" and widgets["namespaced"] is True
        assert widgets["singularName"] == "widget"
        assert widgets["shortNames"] == manifest["spec"]["names"]["shortNames"]
        assert widgets["categories"] == ["conformance"]
        assert "widgets/status" in resources

        created = eventually(lambda: _try_create(custom, group, ns, body))
        assert created["metadata"]["generation"] == 1
        assert created["metadata"]["uid"]

        # Deleting the CRD deletes its objects; the URLs answer 404 again.
        extensions.delete_custom_resource_definition(name)
        eventually(lambda: raw_request(target, "GET", f"/apis/{group}/v1")[0] == 404)
        with pytest.raises(client.ApiException) as caught:
            custom.list_namespaced_custom_object(group, "v1", ns, "widgets")
        assert caught.value.status == 404
    finally:
        try:
            extensions.delete_custom_resource_definition(name)
        except client.ApiException:
            pass


def _try_create(custom: client.CustomObjectsApi, group: str, ns: str, body: dict) -> dict | None:
    try:
        return custom.create_namespaced_custom_object(group, "v1", ns, "widgets", body)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_custom_resource_crud(custom: client.CustomObjectsApi, crd: Crd, ns: str,
                              target: Target) -> None:
    args = (crd.group, "v1", ns, crd.plural)
    body = {"apiVersion": f"{crd.group}/v1", "kind": crd.kind,
            "metadata": {"name": "one", "labels": {"k": "v"}},
            "spec": {"size": 3, "unknownField": "dropped"}}
    made = custom.create_namespaced_custom_object(*args, body)
    # Schema defaults apply and undeclared fields are pruned.
    assert made["spec"] == {"size": 3, "color": "blue"}

    status, _, data = raw_request(target, "GET", f"/apis/{crd.group}/v1/namespaces/{ns}/widgets")
    listed = json.loads(data)
    assert status == 200 and listed["kind"] == "WidgetList"
    assert listed["apiVersion"] == f"{crd.group}/v1"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["one"]

    patched = custom.patch_namespaced_custom_object(
        *args, "one", {"spec": {"size": 4}}, _content_type="application/merge-patch+json")
    assert patched["spec"]["size"] == 4 and patched["metadata"]["generation"] == 2
    patched = custom.patch_namespaced_custom_object(
        *args, "one", [{"op": "replace", "path": "/spec/color", "value": "red"}],
        _content_type="application/json-patch+json")
    assert patched["spec"]["color"] == "red"

    # Strategic merge patch is not supported for custom resources.
    status, _, data = raw_request(target, "PATCH",
                                  f"/apis/{crd.group}/v1/namespaces/{ns}/widgets/one",
                                  b'{"spec":{"size":5}}', "application/strategic-merge-patch+json")
    assert status == 415

    # The schema's types are enforced.
    with pytest.raises(client.ApiException) as caught:
        custom.create_namespaced_custom_object(*args, {
            "apiVersion": f"{crd.group}/v1", "kind": crd.kind, "metadata": {"name": "typed"},
            "spec": {"size": "large"}})
    assert caught.value.status == 422
    assert "spec.size" in status_of(caught.value)["message"]

    selected = custom.list_namespaced_custom_object(*args, label_selector="k=v")
    assert [i["metadata"]["name"] for i in selected["items"]] == ["one"]

    custom.delete_namespaced_custom_object(*args, "one")
    with pytest.raises(client.ApiException) as caught:
        custom.get_namespaced_custom_object(*args, "one")
    assert caught.value.status == 404


def test_crd_name_must_match(extensions: client.ApiextensionsV1Api) -> None:
    manifest = crd_manifest(f"{uuid.uuid4().hex[:8]}.conformance.example.com")
    manifest["metadata"]["name"] = "wrong.example.com"
    with pytest.raises(client.ApiException) as caught:
        extensions.create_custom_resource_definition(manifest)
    assert caught.value.status == 422
    assert 'must be spec.names.plural+"."+spec.group' in status_of(caught.value)["message"]
