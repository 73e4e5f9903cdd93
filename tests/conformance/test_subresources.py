"""The ``/status`` and ``/scale`` subresources, and ``dryRun=All`` persisting nothing."""

from __future__ import annotations

import pytest
from kubernetes import client

from .support import Crd, unique
from .test_crud import deployment


def widget(name: str, size: int = 1) -> dict:
    return {"metadata": {"name": name}, "spec": {"size": size}}


def test_status_split_on_custom_resource(custom: client.CustomObjectsApi, crd: Crd,
                                         ns: str) -> None:
    args = (crd.group, "v1", ns, crd.plural)
    body = widget("w")
    body["status"] = {"phase": "Ignored"}
    made = custom.create_namespaced_custom_object(*args, {"apiVersion": f"{crd.group}/v1",
                                                          "kind": crd.kind, **body})
    assert "status" not in made or "phase" not in (made.get("status") or {})

    # Writing /status changes only status: spec and generation stay.
    updated = custom.patch_namespaced_custom_object_status(
        *args, "w", {"status": {"phase": "Ready"}, "spec": {"size": 99}})
    assert updated["status"]["phase"] == "Ready"
    assert updated["spec"]["size"] == 1
    assert updated["metadata"]["generation"] == made["metadata"]["generation"]

    # Writing the main resource ignores status; a spec change bumps generation.
    current = custom.get_namespaced_custom_object(*args, "w")
    current["status"] = {"phase": "Overwritten"}
    current["spec"]["size"] = 2
    replaced = custom.replace_namespaced_custom_object(*args, "w", current)
    assert replaced["status"]["phase"] == "Ready"
    assert replaced["spec"]["size"] == 2
    assert replaced["metadata"]["generation"] == made["metadata"]["generation"] + 1

    # PUT on /status.
    current = custom.get_namespaced_custom_object_status(*args, "w")
    current["status"] = {"phase": "Done"}
    done = custom.replace_namespaced_custom_object_status(*args, "w", current)
    assert done["status"]["phase"] == "Done" and done["spec"]["size"] == 2


def test_deployment_status_subresource(apps: client.AppsV1Api, ns: str) -> None:
    name = unique("st")
    made = apps.create_namespaced_deployment(ns, deployment(name, replicas=0))
    patched = apps.patch_namespaced_deployment_status(
        name, ns, {"status": {"observedGeneration": 1, "replicas": 0},
                   "spec": {"replicas": 7}})
    assert patched.spec.replicas == 0
    assert patched.metadata.generation == made.metadata.generation
    with pytest.raises(client.ApiException) as caught:
        apps.patch_namespaced_deployment_status("absent", ns, {"status": {}})
    assert caught.value.status == 404


def test_scale_subresource(apps: client.AppsV1Api, ns: str) -> None:
    name = unique("sc")
    apps.create_namespaced_deployment(ns, deployment(name, replicas=1))
    scale = apps.read_namespaced_deployment_scale(name, ns)
    assert scale.kind == "Scale" and scale.api_version == "autoscaling/v1"
    assert scale.spec.replicas == 1
    assert scale.status.selector == f"app={name}"

    scaled = apps.patch_namespaced_deployment_scale(name, ns, {"spec": {"replicas": 3}})
    assert scaled.spec.replicas == 3
    dep = apps.read_namespaced_deployment(name, ns)
    assert dep.spec.replicas == 3 and dep.metadata.generation == 2

    scale = apps.read_namespaced_deployment_scale(name, ns)
    scale.spec.replicas = 0
    replaced = apps.replace_namespaced_deployment_scale(name, ns, scale)
    assert not replaced.spec.replicas  # 0 is omitted from a Scale, as upstream
    assert apps.read_namespaced_deployment(name, ns).spec.replicas == 0

    # A stale resourceVersion on the Scale conflicts like on the object.
    scale.spec.replicas = 2
    with pytest.raises(client.ApiException) as caught:
        apps.replace_namespaced_deployment_scale(name, ns, scale)
    assert caught.value.status == 409


def test_replicaset_scale(apps: client.AppsV1Api, ns: str) -> None:
    name = unique("rs")
    body = deployment(name, replicas=1)
    body["kind"] = "ReplicaSet"
    del body["spec"]["template"]["spec"]["containers"][0]["env"]
    apps.create_namespaced_replica_set(ns, body)
    scaled = apps.patch_namespaced_replica_set_scale(name, ns, {"spec": {"replicas": 4}})
    assert scaled.spec.replicas == 4
    assert apps.read_namespaced_replica_set(name, ns).spec.replicas == 4


def test_dry_run_persists_nothing(core: client.CoreV1Api, apps: client.AppsV1Api,
                                  ns: str) -> None:
    # create
    dry = core.create_namespaced_config_map(ns, {"metadata": {"name": "dry"},
                                                 "data": {"a": "1"}}, dry_run="All")
    assert dry.metadata.name == "dry" and dry.data == {"a": "1"}
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_config_map("dry", ns)
    assert caught.value.status == 404

    # a dry-run create is still validated
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "Dry_Bad"}}, dry_run="All")
    assert caught.value.status == 422

    # patch, replace and delete
    real = core.create_namespaced_config_map(ns, {"metadata": {"name": "wet"},
                                                  "data": {"a": "1"}})
    patched = core.patch_namespaced_config_map("wet", ns, {"data": {"a": "2"}}, dry_run="All")
    assert patched.data == {"a": "2"}
    real.data = {"a": "3"}
    replaced = core.replace_namespaced_config_map("wet", ns, real, dry_run="All")
    assert replaced.data == {"a": "3"}
    core.delete_namespaced_config_map("wet", ns, dry_run="All")
    stored = core.read_namespaced_config_map("wet", ns)
    assert stored.data == {"a": "1"}
    assert stored.metadata.resource_version == real.metadata.resource_version

    # scale
    name = unique("dry")
    apps.create_namespaced_deployment(ns, deployment(name, replicas=1))
    apps.patch_namespaced_deployment_scale(name, ns, {"spec": {"replicas": 5}}, dry_run="All")
    assert apps.read_namespaced_deployment(name, ns).spec.replicas == 1
