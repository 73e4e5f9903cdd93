"""Deployments and ReplicaSets in the sandbox: readiness, `kubectl rollout status`, rolling
updates within maxSurge/maxUnavailable, and scaling through the /scale subresource."""

from __future__ import annotations

import json
import time

import pytest
from controller_harness import (
    condition,
    deployment,
    deployment_ready,
    pod_ready,
    pods_of,
    wait_for,
    web_container,
)

from runbook_lib.sandbox.controllers import NODE_NAME, PORTS_ANNOTATION
from runbook_lib.sandbox.controllers.deployment import template_hash

pytestmark = pytest.mark.timeout(60)


def test_deployment_is_ready_fast_and_rollout_status_succeeds(sandbox, namespace):
    started = time.monotonic()
    sandbox.apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    wait_for(lambda: deployment_ready(sandbox, namespace, "web", 2), timeout=10,
             what="2 ready replicas")
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"2 replicas took {elapsed:.2f} s to become ready"

    result = sandbox.kubectl("-n", namespace, "rollout", "status", "deployment/web",
                             "--timeout=20s")
    assert result.returncode == 0, result.stderr
    assert "successfully rolled out" in result.stdout

    d = sandbox.apps.read_namespaced_deployment("web", namespace)
    assert condition(d, "Available").status == "True"
    assert condition(d, "Progressing").reason == "NewReplicaSetAvailable"
    assert d.status.unavailable_replicas is None

    (rs,) = sandbox.apps.list_namespaced_replica_set(namespace).items
    pod_hash = rs.metadata.labels["pod-template-hash"]
    assert pod_hash == template_hash(sandbox.api.sanitize_for_serialization(d.spec.template))
    assert rs.metadata.name == f"web-{pod_hash}"
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert rs.metadata.owner_references[0].kind == "Deployment"

    pods = pods_of(sandbox, namespace, "app=web")
    assert len(pods) == 2
    for pod in pods:
        assert pod.metadata.name.startswith(rs.metadata.name + "-")
        assert pod.spec.node_name == NODE_NAME
        assert pod.status.phase == "Running" and pod.status.pod_ip == "127.0.0.1"
        assert "8080" in json.loads(pod.metadata.annotations[PORTS_ANNOTATION])
    ports = {json.loads(p.metadata.annotations[PORTS_ANNOTATION])["8080"] for p in pods}
    assert len(ports) == 2

    node = sandbox.core.read_node(NODE_NAME)
    assert condition(node, "Ready").status == "True"


def test_rolling_update_respects_surge_and_unavailability(sandbox, namespace):
    sandbox.apps.create_namespaced_deployment(namespace, deployment("roll", replicas=2))
    wait_for(lambda: deployment_ready(sandbox, namespace, "roll", 2), timeout=10)
    (old_rs,) = sandbox.apps.list_namespaced_replica_set(namespace).items

    d = sandbox.apps.read_namespaced_deployment("roll", namespace)
    d.spec.template.spec.containers[0].env = [{"name": "VERSION", "value": "2"}]
    sandbox.apps.replace_namespaced_deployment("roll", namespace, d)

    # With 2 replicas, 25% means a surge of 1 and no unavailability: never more than 3 pods,
    # never fewer than 2 ready ones.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pods = pods_of(sandbox, namespace, "app=roll")
        assert len(pods) <= 3, [p.metadata.name for p in pods]
        assert sum(1 for p in pods if pod_ready(p)) >= 2
        if deployment_ready(sandbox, namespace, "roll", 2) and len(pods) == 2:
            break
        time.sleep(0.05)
    result = sandbox.kubectl("-n", namespace, "rollout", "status", "deployment/roll",
                             "--timeout=20s")
    assert result.returncode == 0, result.stderr

    sets = {rs.metadata.name: rs for rs in sandbox.apps.list_namespaced_replica_set(namespace).items}
    assert len(sets) == 2
    old = sets.pop(old_rs.metadata.name)
    (new,) = sets.values()
    assert old.spec.replicas == 0
    assert new.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    new_hash = new.metadata.labels["pod-template-hash"]
    pods = wait_for(lambda: [p for p in pods_of(sandbox, namespace, "app=roll", False)]
                    if len(pods_of(sandbox, namespace, "app=roll", False)) == 2 else None,
                    timeout=10, what="old pods to be gone")
    assert {p.metadata.labels["pod-template-hash"] for p in pods} == {new_hash}
    events = [e.message for e in sandbox.core.list_namespaced_event(namespace).items
              if e.reason == "ScalingReplicaSet"]
    assert any(f"Scaled down replica set {old.metadata.name}" in m for m in events)


def test_scale_through_the_scale_subresource(sandbox, namespace):
    sandbox.apps.create_namespaced_deployment(namespace, deployment("scaled", replicas=1))
    wait_for(lambda: deployment_ready(sandbox, namespace, "scaled", 1), timeout=10)

    sandbox.apps.patch_namespaced_deployment_scale("scaled", namespace, {"spec": {"replicas": 3}})
    wait_for(lambda: deployment_ready(sandbox, namespace, "scaled", 3), timeout=10,
             what="3 replicas")
    assert len(pods_of(sandbox, namespace, "app=scaled")) == 3

    sandbox.apps.patch_namespaced_deployment_scale("scaled", namespace, {"spec": {"replicas": 1}})
    wait_for(lambda: deployment_ready(sandbox, namespace, "scaled", 1), timeout=10)
    wait_for(lambda: len(pods_of(sandbox, namespace, "app=scaled", False)) == 1, timeout=10,
             what="scaled-down pods to be deleted")
    scale = sandbox.apps.read_namespaced_deployment_scale("scaled", namespace)
    assert scale.spec.replicas == 1 and scale.status.replicas == 1


def test_deleting_a_deployment_removes_its_pods(sandbox, namespace):
    sandbox.apps.create_namespaced_deployment(
        namespace, deployment("gone", replicas=2, container=web_container()))
    wait_for(lambda: deployment_ready(sandbox, namespace, "gone", 2), timeout=10)
    sandbox.apps.delete_namespaced_deployment("gone", namespace)
    wait_for(lambda: not pods_of(sandbox, namespace, "app=gone", False), timeout=15,
             what="pods of the deleted Deployment to go")
    assert not sandbox.apps.list_namespaced_replica_set(namespace).items
