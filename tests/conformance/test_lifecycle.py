"""Deletion: finalizers, garbage collection by owner, graceful pod deletion, namespaces."""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from .support import Target, eventually, plain, raw_request, status_of, unique

HOLD = "conformance.example.com/hold"


def exists(read, *args) -> bool:
    try:
        read(*args)
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


def owned_pair(core: client.CoreV1Api, ns: str) -> tuple[str, str]:
    owner = core.create_namespaced_config_map(ns, {"metadata": {"name": unique("owner")}})
    dependent = core.create_namespaced_config_map(ns, {"metadata": {
        "name": unique("dep"),
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
                             "name": owner.metadata.name, "uid": owner.metadata.uid}]}})
    return owner.metadata.name, dependent.metadata.name


def test_finalizers_hold_deletion(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "held", "finalizers": [HOLD]}})
    core.delete_namespaced_config_map("held", ns)
    marked = core.read_namespaced_config_map("held", ns)
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.finalizers == [HOLD]

    # No new finalizers on an object being deleted.
    with pytest.raises(client.ApiException) as caught:
        core.patch_namespaced_config_map("held", ns, {"metadata": {
            "finalizers": [HOLD, "conformance.example.com/other"]}})
    assert caught.value.status == 422
    assert "no new finalizers" in status_of(caught.value)["message"]

    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}},
                                     _content_type="application/merge-patch+json")
    assert not exists(core.read_namespaced_config_map, "held", ns)


def test_gc_background(core: client.CoreV1Api, ns: str) -> None:
    owner, dependent = owned_pair(core, ns)
    core.delete_namespaced_config_map(owner, ns)
    eventually(lambda: not exists(core.read_namespaced_config_map, dependent, ns))


def test_gc_orphan(core: client.CoreV1Api, ns: str) -> None:
    owner, dependent = owned_pair(core, ns)
    core.delete_namespaced_config_map(owner, ns, propagation_policy="Orphan")
    eventually(lambda: not exists(core.read_namespaced_config_map, owner, ns))
    def orphaned() -> bool:
        return not core.read_namespaced_config_map(dependent, ns).metadata.owner_references

    eventually(orphaned)


def test_gc_foreground(core: client.CoreV1Api, ns: str) -> None:
    owner, dependent = owned_pair(core, ns)
    core.patch_namespaced_config_map(dependent, ns, {"metadata": {"finalizers": [HOLD]}})
    core.delete_namespaced_config_map(owner, ns, propagation_policy="Foreground")
    # The owner waits, marked, for its dependent to go.
    marked = core.read_namespaced_config_map(owner, ns)
    assert marked.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in marked.metadata.finalizers
    eventually(lambda: core.read_namespaced_config_map(dependent, ns).metadata.deletion_timestamp)
    core.patch_namespaced_config_map(dependent, ns, {"metadata": {"finalizers": None}},
                                     _content_type="application/merge-patch+json")
    eventually(lambda: not exists(core.read_namespaced_config_map, dependent, ns))
    eventually(lambda: not exists(core.read_namespaced_config_map, owner, ns))


def test_gc_keeps_dependents_with_another_owner(core: client.CoreV1Api, ns: str) -> None:
    first = core.create_namespaced_config_map(ns, {"metadata": {"name": "first"}})
    second = core.create_namespaced_config_map(ns, {"metadata": {"name": "second"}})
    refs = [{"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name,
             "uid": o.metadata.uid} for o in (first, second)]
    core.create_namespaced_config_map(ns, {"metadata": {"name": "shared",
                                                        "ownerReferences": refs}})
    core.delete_namespaced_config_map("first", ns)
    def owners() -> list[str]:
        refs = core.read_namespaced_config_map("shared", ns).metadata.owner_references or []
        return [r.name for r in refs]

    eventually(lambda: owners() == ["second"])


def test_gc_deployment_cascade(apps: client.AppsV1Api, ns: str) -> None:
    from .test_crud import deployment

    name = unique("gc")
    owner = apps.create_namespaced_deployment(ns, deployment(name, replicas=0))
    rs = deployment(f"{name}-rs", replicas=0)
    rs["kind"] = "ReplicaSet"
    rs["metadata"]["ownerReferences"] = [{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": name,
        "uid": owner.metadata.uid, "controller": True, "blockOwnerDeletion": True}]
    apps.create_namespaced_replica_set(ns, rs)
    apps.delete_namespaced_deployment(name, ns)
    eventually(lambda: not exists(apps.read_namespaced_replica_set, f"{name}-rs", ns))


def scheduled_pod(name: str, grace: int | None = None) -> dict:
    spec = {"nodeName": "conformance-ghost-node",
            "containers": [{"name": "c", "image": "busybox:1.36"}]}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"metadata": {"name": name}, "spec": spec}


def test_graceful_pod_deletion(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, scheduled_pod("graceful", grace=45))
    deleted = plain(core.delete_namespaced_pod("graceful", ns))
    assert deleted["metadata"]["deletionTimestamp"]
    assert deleted["metadata"]["deletionGracePeriodSeconds"] == 45
    # The pod stays until its kubelet (or a forced delete) finishes it.
    pod = core.read_namespaced_pod("graceful", ns)
    assert pod.metadata.deletion_timestamp is not None
    assert pod.metadata.deletion_grace_period_seconds == 45
    core.delete_namespaced_pod("graceful", ns, grace_period_seconds=0)
    eventually(lambda: not exists(core.read_namespaced_pod, "graceful", ns))


def test_grace_period_from_delete_options(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, scheduled_pod("shorter"))
    deleted = plain(core.delete_namespaced_pod("shorter", ns, grace_period_seconds=5))
    assert deleted["metadata"]["deletionGracePeriodSeconds"] == 5
    core.delete_namespaced_pod("shorter", ns, grace_period_seconds=0)
    eventually(lambda: not exists(core.read_namespaced_pod, "shorter", ns))


def test_unscheduled_pod_goes_at_once(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, {"metadata": {"name": "floating"}, "spec": {
        "schedulerName": "conformance-no-scheduler",
        "containers": [{"name": "c", "image": "busybox:1.36"}]}})
    core.delete_namespaced_pod("floating", ns)
    assert not exists(core.read_namespaced_pod, "floating", ns)


def test_pod_spec_is_mostly_immutable(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, scheduled_pod("fixed"))
    with pytest.raises(client.ApiException) as caught:
        core.patch_namespaced_pod("fixed", ns, {"spec": {"nodeName": "elsewhere"}})
    assert caught.value.status == 422
    image = core.patch_namespaced_pod("fixed", ns, {"spec": {"containers": [
        {"name": "c", "image": "busybox:1.37"}]}})
    assert image.spec.containers[0].image == "busybox:1.37"
    core.delete_namespaced_pod("fixed", ns, grace_period_seconds=0)


def test_namespace_deletion(core: client.CoreV1Api) -> None:
    name = unique("conf-del")
    core.create_namespace({"metadata": {"name": name}})
    assert core.read_namespace(name).status.phase == "Active"
    core.create_namespaced_config_map(name, {"metadata": {"name": "inside"}})
    core.create_namespaced_secret(name, {"metadata": {"name": "inside"}})
    gone = plain(core.delete_namespace(name))
    assert gone["status"]["phase"] == "Terminating"
    assert gone["metadata"]["deletionTimestamp"]

    # New content is refused while it terminates (or the namespace is gone already).
    with pytest.raises(client.ApiException) as caught:
        core.create_namespaced_config_map(name, {"metadata": {"name": "late"}})
    assert caught.value.status in (403, 404)
    if caught.value.status == 403:
        assert "because it is being terminated" in status_of(caught.value)["message"]

    eventually(lambda: not exists(core.read_namespace, name), timeout=40, interval=0.2)
    assert core.list_namespaced_config_map(name).items == []
    assert core.list_namespaced_secret(name).items == []


def test_job_delete_orphans_pods_by_default(core: client.CoreV1Api, batch: client.BatchV1Api,
                                            ns: str) -> None:
    job = batch.create_namespaced_job(ns, {"metadata": {"name": "job"}, "spec": {
        "suspend": True, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
    assert job.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] == \
        job.metadata.uid
    core.create_namespaced_pod(ns, {"metadata": {"name": "job-pod", "ownerReferences": [{
        "apiVersion": "batch/v1", "kind": "Job", "name": "job", "uid": job.metadata.uid}]},
        "spec": {"schedulerName": "conformance-no-scheduler",
                 "containers": [{"name": "c", "image": "busybox:1.36"}]}})
    # batch/v1 Jobs orphan their pods unless told otherwise.
    batch.delete_namespaced_job("job", ns)
    eventually(lambda: not exists(batch.read_namespaced_job, "job", ns))
    eventually(lambda: not core.read_namespaced_pod("job-pod", ns).metadata.owner_references)


def test_job_restart_policy_must_not_be_always(batch: client.BatchV1Api, ns: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        batch.create_namespaced_job(ns, {"metadata": {"name": "always"}, "spec": {
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
    assert caught.value.status == 422
    assert "spec.template.spec.restartPolicy" in status_of(caught.value)["message"]


def test_pod_binding(core: client.CoreV1Api, target: Target, ns: str) -> None:
    core.create_namespaced_pod(ns, {"metadata": {"name": "unbound"}, "spec": {
        "schedulerName": "conformance-no-scheduler",
        "containers": [{"name": "c", "image": "busybox:1.36"}]}})
    body = json.dumps({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "unbound"},
                       "target": {"apiVersion": "v1", "kind": "Node",
                                  "name": "conformance-ghost-node"}}).encode()
    status, _, _ = raw_request(target, "POST", f"/api/v1/namespaces/{ns}/pods/unbound/binding",
                               body)
    assert status == 201
    assert core.read_namespaced_pod("unbound", ns).spec.node_name == "conformance-ghost-node"
    status, _, _ = raw_request(target, "POST", f"/api/v1/namespaces/{ns}/pods/unbound/binding",
                               body)
    assert status == 409
    core.delete_namespaced_pod("unbound", ns, grace_period_seconds=0)
