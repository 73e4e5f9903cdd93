"""kubectl against the target: apply (client- and server-side), get, get -w, wait, rollout."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from .support import Crd, Target, unique


def manifests(ns: str, name: str, env_value: str = "1") -> str:
    docs = [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"{name}-config", "namespace": ns}, "data": {"mode": "test"}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
         "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}}, "spec": {
                      "containers": [{"name": "web", "image": "nginx:1.25",
                                      "env": [{"name": "MODE", "value": env_value}],
                                      "ports": [{"containerPort": 80}]}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": ns},
         "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]}},
    ]
    return yaml.safe_dump_all(docs)


def test_apply_client_side_get_delete(kubectl: Callable[..., Any], apps: client.AppsV1Api,
                                      ns: str, tmp_path: Path) -> None:
    name = unique("kc")
    path = tmp_path / "app.yaml"
    path.write_text(manifests(ns, name))
    out = kubectl("apply", "--validate=false", "-f", str(path)).stdout
    assert f"deployment.apps/{name} created" in out
    assert f"service/{name} created" in out

    path.write_text(manifests(ns, name, env_value="2"))
    out = kubectl("apply", "--validate=false", "-f", str(path)).stdout
    assert f"deployment.apps/{name} configured" in out
    assert f"configmap/{name}-config unchanged" in out
    env = apps.read_namespaced_deployment(name, ns).spec.template.spec.containers[0].env
    assert [(e.name, e.value) for e in env] == [("MODE", "2")]

    table = kubectl("get", "deployments,services", "-n", ns).stdout
    assert "NAME" in table and f"deployment.apps/{name}" in table and f"service/{name}" in table
    listed = json.loads(kubectl("get", "deployment", name, "-n", ns, "-o", "json").stdout)
    assert listed["kind"] == "Deployment" and listed["spec"]["replicas"] == 0

    out = kubectl("delete", "-f", str(path), "--wait=false").stdout
    assert f'deployment.apps "{name}" deleted' in out


def test_apply_server_side(kubectl: Callable[..., Any], apps: client.AppsV1Api, ns: str,
                           tmp_path: Path) -> None:
    name = unique("ssa")
    path = tmp_path / "app.yaml"
    path.write_text(manifests(ns, name))
    out = kubectl("apply", "--server-side", "-f", str(path)).stdout
    assert f"deployment.apps/{name} serverside-applied" in out
    path.write_text(manifests(ns, name, env_value="3"))
    kubectl("apply", "--server-side", "-f", str(path))
    dep = apps.read_namespaced_deployment(name, ns)
    assert dep.spec.template.spec.containers[0].env[0].value == "3"
    assert any(m.manager == "kubectl" and m.operation == "Apply"
               for m in dep.metadata.managed_fields)


def _background(kubectl_args: list[str], target: Target,
                cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(["kubectl", "--kubeconfig", target.kubeconfig, "--cache-dir",
                             str(cache), *kubectl_args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "KUBECONFIG": target.kubeconfig})


def test_rollout_status(kubectl: Callable[..., Any], target: Target, apps: client.AppsV1Api,
                        ns: str, tmp_path: Path) -> None:
    name = unique("roll")
    path = tmp_path / "app.yaml"
    path.write_text(manifests(ns, name))
    kubectl("apply", "--validate=false", "-f", str(path))
    waiting = _background(["rollout", "status", f"deployment/{name}", "-n", ns,
                           "--timeout=30s"], target, tmp_path)
    try:
        time.sleep(0.5)
        # What a Deployment controller reports for a finished rollout of zero replicas (a real
        # cluster's controller writes the same).
        dep = apps.read_namespaced_deployment(name, ns)
        apps.patch_namespaced_deployment_status(name, ns, {"status": {
            "observedGeneration": dep.metadata.generation, "replicas": 0,
            "updatedReplicas": 0, "readyReplicas": 0, "availableReplicas": 0,
            "conditions": [{"type": "Progressing", "status": "True",
                            "reason": "NewReplicaSetAvailable"},
                           {"type": "Available", "status": "True",
                            "reason": "MinimumReplicasAvailable"}]}})
        out, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0, err
    assert "successfully rolled out" in out


def test_wait_for_condition(kubectl: Callable[..., Any], target: Target,
                            custom: client.CustomObjectsApi, crd: Crd, ns: str,
                            tmp_path: Path) -> None:
    path = tmp_path / "widget.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": f"{crd.group}/v1", "kind": crd.kind,
                                    "metadata": {"name": "w", "namespace": ns},
                                    "spec": {"size": 2}}))
    kubectl("apply", "--validate=false", "-f", str(path))
    waiting = _background(["wait", "--for=condition=Ready", f"{crd.plural}.{crd.group}/w",
                           "-n", ns, "--timeout=30s"], target, tmp_path)
    try:
        time.sleep(0.5)
        custom.patch_namespaced_custom_object_status(
            crd.group, "v1", ns, crd.plural, "w",
            {"status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}},
            _content_type="application/merge-patch+json")
        out, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
    assert waiting.returncode == 0, err
    assert "condition met" in out

    # The CRD's printer columns reach kubectl get.
    table = kubectl("get", f"{crd.plural}.{crd.group}", "-n", ns).stdout
    assert table.split()[:4] == ["NAME", "SIZE", "PHASE", "AGE"]
    assert "Ready" in table


def test_get_watch(kubectl: Callable[..., Any], target: Target, core: client.CoreV1Api, ns: str,
                   tmp_path: Path) -> None:
    watching = _background(["get", "configmaps", "-n", ns, "-w", "--request-timeout=3s"],
                           target, tmp_path)
    try:
        time.sleep(1.0)
        core.create_namespaced_config_map(ns, {"metadata": {"name": "watched"}})
        out, _ = watching.communicate(timeout=15)
    finally:
        if watching.poll() is None:
            watching.kill()
            watching.wait()
    assert "NAME" in out and "watched" in out
