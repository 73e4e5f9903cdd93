"""End-to-end tests of the sandbox KEDA operator against the sandbox API server.

The operator runs as a subprocess, exactly as the sandbox kubelet runs it, with a kubeconfig for
an in-process API server. The test registers the ScaledObject CRD itself, creates a Deployment
(no kubelet: only ``spec.replicas`` through ``/scale`` matters here), serves a queue depth it
changes at will, and watches the operator follow it: HPA and status as KEDA writes them, scale-up
after a burst, scale-down only after the stabilization window, the clamp at max, Events and the
JSON decision lines on stdout. A second test reads the queue through a cluster URL, i.e. through
the API server's service proxy, and checks how a failing trigger is reported.
"""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.timeout(90)

NAMESPACE = "dbos"
SO_PATH = "/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects"
HPA_PATH = "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
DEPLOY_PATH = "/apis/apps/v1/namespaces/{ns}/deployments"

POLLING_S = 1
WINDOW_S = 4

SCALED_OBJECT_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "scaledobjects.keda.sh"},
    "spec": {
        "group": "keda.sh",
        "names": {"kind": "ScaledObject", "listKind": "ScaledObjectList",
                  "plural": "scaledobjects", "singular": "scaledobject", "shortNames": ["so"]},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1alpha1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "ScaleTargetKind", "type": "string",
                 "jsonPath": ".status.scaleTargetKind"},
                {"name": "ScaleTargetName", "type": "string",
                 "jsonPath": ".spec.scaleTargetRef.name"},
                {"name": "Min", "type": "integer", "jsonPath": ".spec.minReplicaCount"},
                {"name": "Max", "type": "integer", "jsonPath": ".spec.maxReplicaCount"},
                {"name": "Ready", "type": "string",
                 "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                {"name": "Active", "type": "string",
                 "jsonPath": ".status.conditions[?(@.type==\"Active\")].status"},
                {"name": "Fallback", "type": "string",
                 "jsonPath": ".status.conditions[?(@.type==\"Fallback\")].status"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }},
        }],
    },
}


# -- helpers -----------------------------------------------------------------------------------

def ok(response, *codes):
    assert response.status_code in (codes or (200, 201)), (
        f"{response.request.method} {response.request.url.path}: "
        f"{response.status_code} {response.text[:300]}")
    return response.json()


def wait_until(what: str, check, timeout_s: float = 10.0, interval_s: float = 0.05):
    """Poll ``check`` until it returns something truthy; that value, or an AssertionError."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def create_namespace(client, name: str) -> None:
    ok(client.post("/api/v1/namespaces", json={
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}), 201, 409)


def register_crd(client) -> None:
    ok(client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                   json=SCALED_OBJECT_CRD))
    wait_until("the ScaledObject API",
               lambda: client.get("/apis/keda.sh/v1alpha1/scaledobjects").status_code == 200)


def create_deployment(client, namespace: str, name: str, replicas: int) -> None:
    labels = {"app": name}
    ok(client.post(DEPLOY_PATH.format(ns=namespace), json={
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                {"name": "app", "image": "dbos-app:test", "ports": [{"containerPort": 8080}]}]}},
        },
    }))


def replicas(client, namespace: str, name: str) -> int:
    scale = ok(client.get(f"{DEPLOY_PATH.format(ns=namespace)}/{name}/scale"), 200)
    return scale["spec"].get("replicas", 0)


def scaled_object(namespace: str, url: str, *, min_r: int, max_r: int,
                  window_s: int | None) -> dict:
    spec = {
        "scaleTargetRef": {"name": "dbos-app"},
        "pollingInterval": POLLING_S,
        "cooldownPeriod": 1,
        "minReplicaCount": min_r,
        "maxReplicaCount": max_r,
        "triggers": [{"type": "metrics-api", "metadata": {
            "url": url, "valueLocation": "queue_length", "targetValue": "2"}}],
    }
    if window_s is not None:
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": {
            "scaleDown": {"stabilizationWindowSeconds": window_s}}}}
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "dbos-app-scaledobject", "namespace": namespace,
                         "labels": {"app": "dbos-app"}},
            "spec": spec}


def condition(obj: dict | None, kind: str) -> dict:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}


def with_condition(obj: dict | None, kind: str, status: str) -> dict | None:
    """``obj`` when its condition ``kind`` has ``status``, else None (for :func:`wait_until`)."""
    return obj if condition(obj, kind).get("status") == status else None


def get(client, path: str) -> dict | None:
    response = client.get(path)
    return response.json() if response.status_code == 200 else None


def rescale_events(client, namespace: str, hpa_name: str) -> list[dict]:
    events = ok(client.get(f"/api/v1/namespaces/{namespace}/events"), 200)["items"]
    found = [e for e in events if e["involvedObject"].get("name") == hpa_name
             and e["reason"] == "SuccessfulRescale"]
    return sorted(found, key=lambda e: e["metadata"]["name"])


# -- tests -------------------------------------------------------------------------------------

def test_operator_follows_the_queue(cluster, queue_endpoint, operator_factory):
    client, kubeconfig = cluster
    create_namespace(client, NAMESPACE)
    create_deployment(client, NAMESPACE, "dbos-app", replicas=1)

    # Started before the CRD exists: the operator must wait for it, and start fast.
    operator = operator_factory(kubeconfig)
    startup_s = operator.wait_healthy()
    # About 1 s on an idle machine; the bound leaves room for a busy two-core one.
    assert startup_s < 10, f"startup took {startup_s:.1f} s"
    register_crd(client)

    so_path = SO_PATH.format(ns=NAMESPACE)
    hpa_name = "keda-hpa-dbos-app-scaledobject"
    hpa_path = f"{HPA_PATH.format(ns=NAMESPACE)}/{hpa_name}"
    ok(client.post(so_path, json=scaled_object(
        NAMESPACE, f"{queue_endpoint.url}/metrics/taskQueue", min_r=1, max_r=5,
        window_s=WINDOW_S)))

    # The HPA KEDA creates.
    hpa = wait_until("the HPA", lambda: get(client, hpa_path))
    labels = hpa["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "keda-operator"
    assert labels["app.kubernetes.io/name"] == hpa_name
    assert labels["scaledobject.keda.sh/name"] == "dbos-app-scaledobject"
    assert labels["app"] == "dbos-app"
    owner = hpa["metadata"]["ownerReferences"][0]
    so = get(client, f"{so_path}/dbos-app-scaledobject")
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "ScaledObject", so["metadata"]["uid"], True)
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": "dbos-app"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 5)
    assert spec["metrics"] == [{"type": "External", "external": {
        "metric": {"name": "s0-metric-api-queue_length",
                   "selector": {"matchLabels": {
                       "scaledobject.keda.sh/name": "dbos-app-scaledobject"}}},
        "target": {"type": "AverageValue", "averageValue": "2"}}}]
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == WINDOW_S

    # The ScaledObject's status as KEDA writes it.
    so = wait_until("ScaledObject Ready", lambda: with_condition(
        get(client, f"{so_path}/dbos-app-scaledobject"), "Ready", "True"))
    status = so["status"]
    assert status["scaleTargetKind"] == "apps/v1.Deployment"
    assert status["scaleTargetGVKR"] == {"group": "apps", "version": "v1",
                                         "kind": "Deployment", "resource": "deployments"}
    assert status["originalReplicaCount"] == 1
    assert status["hpaName"] == hpa_name
    assert status["externalMetricNames"] == ["s0-metric-api-queue_length"]
    assert condition(so, "Active")["status"] == "False"
    assert condition(so, "Fallback")["status"] == "False"
    assert replicas(client, NAMESPACE, "dbos-app") == 1

    # A burst: 7 queued at a target of 2 → 4 replicas within two polling intervals.
    burst = time.monotonic()
    queue_endpoint.queue_length = 7
    wait_until("4 replicas", lambda: replicas(client, NAMESPACE, "dbos-app") == 4,
               timeout_s=10)
    scale_up_s = time.monotonic() - burst
    assert scale_up_s <= 2 * POLLING_S + 0.5, f"scale-up took {scale_up_s:.2f} s"
    wait_until("Active", lambda: condition(
        get(client, f"{so_path}/dbos-app-scaledobject"), "Active").get("status") == "True")

    # A flood: 100 queued wants 50; the HPA stops at maxReplicaCount.
    queue_endpoint.queue_length = 100
    wait_until("5 replicas", lambda: replicas(client, NAMESPACE, "dbos-app") == 5)
    hpa = wait_until("ScalingLimited", lambda: with_condition(
        get(client, hpa_path), "ScalingLimited", "True"))
    assert condition(hpa, "ScalingLimited")["reason"] == "TooManyReplicas"
    time.sleep(1.5 * POLLING_S)
    assert replicas(client, NAMESPACE, "dbos-app") == 5

    # Drained: the scale-down waits for the stabilization window, then goes to min.
    drained = time.monotonic()
    queue_endpoint.queue_length = 0
    while replicas(client, NAMESPACE, "dbos-app") == 5:
        assert time.monotonic() - drained < WINDOW_S + 5, "no scale-down after the window"
        time.sleep(0.05)
    scale_down_s = time.monotonic() - drained
    assert replicas(client, NAMESPACE, "dbos-app") == 1
    assert scale_down_s >= WINDOW_S - POLLING_S, f"scaled down after only {scale_down_s:.2f} s"

    # The HPA's record of it.
    hpa = get(client, hpa_path)
    assert hpa["status"]["currentReplicas"] in (1, 5)
    assert hpa["status"].get("lastScaleTime")
    assert condition(hpa, "ScalingActive")["reason"] == "ValidMetricFound"
    wait_until("three rescale events",
               lambda: len(rescale_events(client, NAMESPACE, hpa_name)) >= 3, timeout_s=3)
    messages = [e["message"] for e in rescale_events(client, NAMESPACE, hpa_name)]
    label = ("external metric s0-metric-api-queue_length(&LabelSelector{MatchLabels:"
             "map[string]string{scaledobject.keda.sh/name: dbos-app-scaledobject,},"
             "MatchExpressions:[]LabelSelectorRequirement{},})")
    assert messages == [f"New size: 4; reason: {label} above target",
                        f"New size: 5; reason: {label} above target",
                        "New size: 1; reason: All metrics below target"]

    # The pod log: one JSON line per sync, with the decision.
    decisions = [line for line in operator.lines if line.get("scaledobject")
                 == f"{NAMESPACE}/dbos-app-scaledobject" and "recommendation" in line]
    assert len(decisions) >= 8
    for key in ("time", "metric", "target", "current", "recommendation", "stabilized",
                "desired", "reason"):
        assert all(key in line for line in decisions), key
    first_up = next(line for line in decisions if line["rescaled"])
    assert (first_up["metric"], first_up["target"], first_up["current"],
            first_up["recommendation"], first_up["desired"]) == (7, 2, 1, 4, 4)
    held = [line for line in decisions if line["reason"] == "ScaleDownStabilized"]
    assert held and all(line["desired"] == 5 and line["recommendation"] == 0 for line in held)

    # Deleting the ScaledObject removes its HPA.
    ok(client.delete(f"{so_path}/dbos-app-scaledobject"), 200, 202)
    wait_until("the HPA to go", lambda: client.get(hpa_path).status_code == 404)

    assert operator.terminate() == 0


def test_cluster_url_through_the_service_proxy(cluster, queue_endpoint, operator_factory):
    client, kubeconfig = cluster
    create_namespace(client, "demo")
    ok(client.post("/api/v1/namespaces/demo/services", json={
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "queue", "namespace": "demo"},
        "spec": {"selector": {"app": "dbos-app"}, "ports": [{"port": 8080}]}}))
    create_deployment(client, "demo", "dbos-app", replicas=1)
    register_crd(client)
    operator = operator_factory(kubeconfig)
    operator.wait_healthy()

    so_path = SO_PATH.format(ns="demo")
    hpa_path = f"{HPA_PATH.format(ns='demo')}/keda-hpa-dbos-app-scaledobject"
    queue_endpoint.queue_length = 7
    ok(client.post(so_path, json=scaled_object(
        "demo", "http://queue.demo.svc.cluster.local:8080/metrics/taskQueue?x=1",
        min_r=1, max_r=10, window_s=None)))

    wait_until("4 replicas", lambda: replicas(client, "demo", "dbos-app") == 4)
    assert "/metrics/taskQueue?x=1" in queue_endpoint.paths
    wait_until("Ready", lambda: with_condition(
        get(client, f"{so_path}/dbos-app-scaledobject"), "Ready", "True"))

    # A failing endpoint: Ready turns False, failures are counted, nothing is scaled.
    queue_endpoint.status = 503
    so = wait_until("Ready False", lambda: with_condition(
        get(client, f"{so_path}/dbos-app-scaledobject"), "Ready", "False"))
    assert condition(so, "Ready")["reason"] == "TriggerError"
    wait_until("2 failures", lambda: get(client, f"{so_path}/dbos-app-scaledobject")["status"]
               ["health"]["s0-metric-api-queue_length"]["numberOfFailures"] >= 2)
    hpa = get(client, hpa_path)
    assert condition(hpa, "ScalingActive")["reason"] == "FailedGetExternalMetric"
    assert replicas(client, "demo", "dbos-app") == 4

    # Back again: Ready again, and the queue drives the scale once more.
    queue_endpoint.status = 200
    queue_endpoint.queue_length = 16
    wait_until("8 replicas", lambda: replicas(client, "demo", "dbos-app") == 8)
    so = wait_until("Ready again", lambda: with_condition(
        get(client, f"{so_path}/dbos-app-scaledobject"), "Ready", "True"))
    assert so["status"]["health"]["s0-metric-api-queue_length"] == {
        "numberOfFailures": 0, "status": "Happy"}

    # A ScaledObject whose target does not exist is not Ready, and says why.
    orphan = scaled_object("demo", "http://queue.demo.svc:8080/m", min_r=1, max_r=3,
                           window_s=None)
    orphan["metadata"]["name"] = "orphan"
    orphan["spec"]["scaleTargetRef"] = {"name": "missing"}
    ok(client.post(so_path, json=orphan))
    so = wait_until("orphan not Ready", lambda: with_condition(
        get(client, f"{so_path}/orphan"), "Ready", "False"))
    assert condition(so, "Ready")["reason"] == "ScaledObjectCheckFailed"
    assert 'deployments.apps "missing" not found' in condition(so, "Ready")["message"]

    assert operator.terminate() == 0


def test_scale_to_zero_and_back(cluster, queue_endpoint, operator_factory):
    client, kubeconfig = cluster
    create_namespace(client, NAMESPACE)
    create_deployment(client, NAMESPACE, "dbos-app", replicas=2)
    register_crd(client)
    operator = operator_factory(kubeconfig)
    operator.wait_healthy()

    # minReplicaCount 0 and never active: KEDA takes the target to zero at once.
    so_path = SO_PATH.format(ns=NAMESPACE)
    so = scaled_object(NAMESPACE, f"{queue_endpoint.url}/q", min_r=0, max_r=4, window_s=0)
    so["spec"]["cooldownPeriod"] = 2
    ok(client.post(so_path, json=so))
    wait_until("0 replicas", lambda: replicas(client, NAMESPACE, "dbos-app") == 0)
    hpa_path = f"{HPA_PATH.format(ns=NAMESPACE)}/keda-hpa-dbos-app-scaledobject"
    hpa = wait_until("ScalingDisabled", lambda: (get(client, hpa_path) or {}) if condition(
        get(client, hpa_path), "ScalingActive").get("reason") == "ScalingDisabled" else None)
    assert hpa["spec"]["minReplicas"] == 1

    # Work arrives: KEDA activates 0 → 1, then the HPA takes it to ceil(5 / 2) = 3.
    queue_endpoint.queue_length = 5
    wait_until("3 replicas", lambda: replicas(client, NAMESPACE, "dbos-app") == 3)
    events = ok(client.get(f"/api/v1/namespaces/{NAMESPACE}/events"), 200)["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"]["kind"] == "ScaledObject"}
    assert {"KEDAScaleTargetActivated", "KEDAScaleTargetDeactivated"} <= reasons

    # Drained: the HPA goes to its minimum of 1 at once (window 0), KEDA to 0 once the
    # cooldown of 2 s since the last active read has passed.
    drained = time.monotonic()
    queue_endpoint.queue_length = 0
    wait_until("1 replica", lambda: replicas(client, NAMESPACE, "dbos-app") == 1)
    wait_until("0 replicas again", lambda: replicas(client, NAMESPACE, "dbos-app") == 0)
    assert time.monotonic() - drained >= 2 - POLLING_S
    def keda_steps():
        return [(line["current"], line["desired"]) for line in operator.lines if line.get("keda")]

    wait_until("the log line", lambda: len(keda_steps()) >= 3, timeout_s=3)
    assert keda_steps() == [(2, 0), (0, 1), (1, 0)]

    assert operator.terminate() == 0
