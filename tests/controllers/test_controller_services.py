"""Services in the sandbox: Endpoints, the API server's service proxy, and cluster DNS names
rewritten by the Network to a ready pod's local port."""

from __future__ import annotations

import json
import urllib.request

import pytest
from controller_harness import deployment, deployment_ready, pods_of, wait_for, web_container

from runbook_lib.sandbox.controllers import PORTS_ANNOTATION

pytestmark = pytest.mark.timeout(60)


def test_endpoints_proxy_and_cluster_names(sandbox, namespace):
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}
    sandbox.apps.create_namespaced_deployment(
        namespace, deployment("api", replicas=2, container=web_container(readinessProbe=probe)))
    sandbox.core.create_namespaced_service(namespace, {
        "metadata": {"name": "api", "labels": {"tier": "web"}},
        "spec": {"selector": {"app": "api"},
                 "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}})
    wait_for(lambda: deployment_ready(sandbox, namespace, "api", 2), timeout=10)

    def endpoints():
        ep = sandbox.core.read_namespaced_endpoints("api", namespace)
        subsets = ep.subsets or []
        return ep if subsets and len(subsets[0].addresses or []) == 2 else None

    ep = wait_for(endpoints, timeout=10, what="2 ready addresses")
    subset = ep.subsets[0]
    assert [(p.name, p.port) for p in subset.ports] == [("web", 8080)]
    assert {a.ip for a in subset.addresses} == {"127.0.0.1"}
    pods = pods_of(sandbox, namespace, "app=api")
    assert {a.target_ref.name for a in subset.addresses} == {p.metadata.name for p in pods}
    assert ep.metadata.labels == {"tier": "web"}
    local_ports = {json.loads(p.metadata.annotations[PORTS_ANNOTATION])["8080"] for p in pods}

    # The service proxy of the API server reaches the pods, in turn.
    seen = set()
    for _ in range(4):
        body = sandbox.core.connect_get_namespaced_service_proxy_with_path(
            "api:web", namespace, "hello")
        name, path = body.split()
        assert path == "/hello"
        seen.add(name)
    assert seen == {p.metadata.name for p in pods}

    # Cluster DNS names of the Service resolve to a ready pod's local port.
    for host in (f"api.{namespace}.svc.cluster.local", f"api.{namespace}.svc", f"api.{namespace}"):
        local_host, local_port = sandbox.network.resolve(host, 80)
        assert local_host == "127.0.0.1" and local_port in local_ports
    rewritten = sandbox.network.rewrite(f"http://api.{namespace}.svc.cluster.local:80/metrics/q")
    with urllib.request.urlopen(rewritten, timeout=5) as response:
        assert response.read().decode().endswith("/metrics/q")
    assert sandbox.network.resolve(f"api.{namespace}.svc.cluster.local", 81) is None
    assert sandbox.network.resolve(f"nope.{namespace}.svc", 80) is None

    # No ready pod, no address.
    sandbox.apps.patch_namespaced_deployment_scale("api", namespace, {"spec": {"replicas": 0}})
    wait_for(lambda: not (sandbox.core.read_namespaced_endpoints("api", namespace).subsets),
             timeout=10, what="empty Endpoints")
    assert sandbox.network.resolve(f"api.{namespace}.svc", 80) is None
