"""Unit tests of the sandbox KEDA operator's HPA arithmetic and of its pure KEDA helpers.

Each case is a worked example with the numbers written out: the walkthrough's queue of 7 at a
target of 2, the 10 % tolerance, the clamps, the stabilization windows and the rate policies,
checked against what the Kubernetes HPA controller computes for External metrics.
"""

from __future__ import annotations

import pytest

from runbook_lib.sandbox.addons.keda import (
    Behavior,
    History,
    Proposal,
    ScaledObjectLoop,
    ScalingPolicy,
    SpecError,
    TriggerState,
    behavior_from_spec,
    cluster_url,
    decide,
    external_metric_replicas,
    format_quantity,
    hpa_manifest,
    limit_with_behavior,
    metric_label,
    parse_quantity,
    parse_scaled_object,
    record_scale_event,
    scale_down_limit,
    scale_up_limit,
    value_at,
)

LABEL = "external metric s0-metric-api-queue_length(…)"


def scaled_object(**spec) -> dict:
    base = {
        "scaleTargetRef": {"name": "dbos-app"},
        "triggers": [{"type": "metrics-api", "metadata": {
            "url": "http://dbos-app.dbos.svc.cluster.local:8080/metrics/taskQueue",
            "valueLocation": "queue_length", "targetValue": "2"}}],
    }
    base.update(spec)
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "dbos-app-scaledobject", "namespace": "dbos", "uid": "u-1",
                         "labels": {"team": "a"}},
            "spec": base}


def sync(history, now, current, metric, *, target=2.0, min_r=1, max_r=10, behavior=None,
         window=300):
    """One HPA sync for an AverageValue metric."""
    proposal = Proposal(LABEL, external_metric_replicas(metric, target, current))
    return decide(history, now, current=current, proposals=[proposal], min_replicas=min_r,
                  max_replicas=max_r, behavior=behavior, downscale_window_s=window)


# -- the recommendation ------------------------------------------------------------------------

def test_walkthrough_seven_queued_target_two_gives_four():
    assert external_metric_replicas(7, 2, current=1) == 4
    decision = sync(History(), 0.0, current=1, metric=7)
    assert (decision.recommendation, decision.desired, decision.rescale) == (4, 4, True)
    assert decision.reason == f"{LABEL} above target"
    assert decision.conditions["AbleToScale"][1] == "SucceededRescale"
    assert decision.conditions["ScalingActive"][:2] == ("True", "ValidMetricFound")
    assert decision.conditions["ScalingLimited"][:2] == ("False", "DesiredWithinRange")


@pytest.mark.parametrize("metric, current, expected", [
    (4.38, 2, 2),   # ratio 1.095: within tolerance, keep
    (4.5, 2, 3),    # ratio 1.125: ceil(4.5 / 2) = 3
    (3.7, 2, 2),    # ratio 0.925: keep
    (2.9, 2, 2),    # ratio 0.725 but ceil(1.45) = 2
    (2.0, 2, 1),    # ratio 0.5: ceil(1) = 1
    (1.0, 3, 1),    # ratio 1/6: ceil(0.5) = 1
    (0.0, 3, 0),    # nothing queued: 0 (the min clamp comes later)
    (20.0, 10, 10),  # exactly on target
    (21.0, 10, 10),  # ratio 1.05: keep
    (23.0, 10, 12),  # ratio 1.15: ceil(11.5) = 12
])
def test_average_value_recommendation_and_tolerance(metric, current, expected):
    assert external_metric_replicas(metric, 2, current) == expected


@pytest.mark.parametrize("metric, current, expected", [
    (10, 3, 6),   # ratio 2: ceil(3 × 2)
    (5.4, 3, 3),  # ratio 1.08: keep
    (2, 4, 2),    # ratio 0.4: ceil(1.6)
    (7, 0, 2),    # from zero: ceil(ratio)
])
def test_value_metric_type_scales_current_by_ratio(metric, current, expected):
    assert external_metric_replicas(metric, 5, current, metric_type="Value") == expected


def test_milli_precision_matches_quantities():
    # 0.0004 is below a milli-unit: the HPA sees 0.
    assert external_metric_replicas(0.0004, 2, 1) == 0
    assert external_metric_replicas(10.0004, 2, 5) == 5  # exactly on target once in milli
    with pytest.raises(ValueError):
        external_metric_replicas(1, 0, 1)


# -- clamps and out-of-range targets -----------------------------------------------------------

def test_clamps_at_max_replicas():
    decision = sync(History(), 0.0, current=6, metric=100, max_r=10)
    assert (decision.recommendation, decision.desired) == (50, 10)
    assert decision.conditions["ScalingLimited"][:2] == ("True", "TooManyReplicas")


def test_legacy_scale_up_limit_is_twice_current_or_four():
    decision = sync(History(), 0.0, current=4, metric=100, max_r=20)
    assert decision.desired == 8
    assert decision.conditions["ScalingLimited"][:2] == ("True", "ScaleUpLimit")
    decision = sync(History(), 0.0, current=1, metric=100, max_r=20)
    assert decision.desired == 4


def test_clamps_at_min_replicas():
    decision = sync(History(), 0.0, current=3, metric=0, min_r=1, window=0)
    assert (decision.recommendation, decision.desired) == (0, 1)
    assert decision.reason == "All metrics below target"
    assert decision.conditions["ScalingLimited"][:2] == ("True", "TooFewReplicas")


def test_target_at_zero_disables_scaling():
    decision = sync(History(), 0.0, current=0, metric=9)
    assert (decision.desired, decision.rescale) == (0, False)
    assert decision.conditions["ScalingActive"][:2] == ("False", "ScalingDisabled")


def test_target_above_max_is_brought_back_without_metrics():
    decision = sync(History(), 0.0, current=12, metric=0, max_r=10)
    assert (decision.desired, decision.rescale) == (10, True)
    assert decision.reason == "Current number of replicas above Spec.MaxReplicas"
    decision = sync(History(), 0.0, current=1, metric=0, min_r=3)
    assert (decision.desired, decision.reason) == (
        3, "Current number of replicas below Spec.MinReplicas")


def test_failed_metric_keeps_current_and_says_why():
    proposals = [Proposal(LABEL, None, "unable to get external metric …: connection refused")]
    decision = decide(History(), 0.0, current=3, proposals=proposals, min_replicas=1,
                      max_replicas=10, behavior=None)
    assert (decision.desired, decision.rescale) == (3, False)
    status, reason, message = decision.conditions["ScalingActive"]
    assert (status, reason) == ("False", "FailedGetExternalMetric")
    assert message.startswith("the HPA was unable to compute the replica count: ")


def test_one_failed_metric_blocks_only_a_scale_down():
    up = [Proposal("a", None, "boom"), Proposal("b", 6)]
    assert decide(History(), 0.0, current=3, proposals=up, min_replicas=1, max_replicas=10,
                  behavior=None).desired == 6
    down = [Proposal("a", None, "boom"), Proposal("b", 1)]
    decision = decide(History(), 0.0, current=3, proposals=down, min_replicas=1,
                      max_replicas=10, behavior=None)
    assert (decision.desired, decision.rescale) == (3, False)


def test_highest_metric_wins():
    proposals = [Proposal("a", 2), Proposal("b", 5)]
    decision = decide(History(), 0.0, current=1, proposals=proposals, min_replicas=1,
                      max_replicas=10, behavior=None)
    assert (decision.desired, decision.reason) == (4, "b above target")  # legacy limit 4


# -- stabilization windows ---------------------------------------------------------------------

def test_legacy_scale_down_waits_for_the_default_window():
    history = History()
    assert sync(history, 0.0, current=4, metric=8).desired == 4
    held = sync(history, 100.0, current=4, metric=1)
    assert (held.recommendation, held.stabilized, held.desired) == (1, 4, 4)
    assert held.conditions["AbleToScale"][1] == "ScaleDownStabilized"
    assert held.reason == "ScaleDownStabilized"
    assert sync(history, 299.0, current=4, metric=1).desired == 4
    released = sync(history, 301.0, current=4, metric=1)
    assert (released.desired, released.reason) == (1, "All metrics below target")


def test_behavior_scale_down_window_uses_highest_recent_recommendation():
    behavior = behavior_from_spec({"scaleDown": {"stabilizationWindowSeconds": 60}})
    history = History()
    assert sync(history, 0.0, current=5, metric=10, behavior=behavior).desired == 5
    assert sync(history, 20.0, current=5, metric=6, behavior=behavior).desired == 5
    # At 70 s the 5 of t=0 has left the window; the 3 of t=20 is the highest left.
    step = sync(history, 70.0, current=5, metric=1, behavior=behavior)
    assert (step.recommendation, step.stabilized, step.desired) == (1, 3, 3)
    assert step.conditions["AbleToScale"][1] == "SucceededRescale"
    record_scale_event(history, behavior, 70.0, 5, 3)
    step = sync(history, 81.0, current=3, metric=1, behavior=behavior)
    assert step.desired == 1


def test_behavior_scale_up_window_uses_lowest_recent_recommendation():
    behavior = behavior_from_spec({"scaleUp": {"stabilizationWindowSeconds": 30}})
    history = History()
    assert sync(history, 0.0, current=1, metric=2, behavior=behavior).desired == 1
    held = sync(history, 10.0, current=1, metric=16, behavior=behavior)
    assert (held.recommendation, held.stabilized, held.desired) == (8, 1, 1)
    assert held.conditions["AbleToScale"][1] == "ScaleUpStabilized"
    released = sync(history, 31.0, current=1, metric=16, behavior=behavior)
    # Stabilized at 8, then the default policies allow max(1 + 4, 1 × 2) = 5.
    assert (released.stabilized, released.desired) == (8, 5)
    assert released.conditions["ScalingLimited"][:2] == ("True", "ScaleUpLimit")


# -- rate policies -----------------------------------------------------------------------------

def test_default_scale_up_policy_is_four_pods_or_double_per_fifteen_seconds():
    behavior = behavior_from_spec({})
    history = History()
    step = sync(history, 0.0, current=2, metric=40, max_r=100, behavior=behavior)
    assert step.desired == 6  # max(2 + 4, 2 × 2)
    record_scale_event(history, behavior, 0.0, 2, 6)
    # Within the same 15 s period the period started at 2: still 6.
    step = sync(history, 5.0, current=6, metric=40, max_r=100, behavior=behavior)
    assert (step.desired, step.rescale) == (6, False)
    assert step.reason == "ScaleUpLimit"
    # A new period starts from 6: max(6 + 4, 6 × 2) = 12.
    step = sync(history, 16.0, current=6, metric=40, max_r=100, behavior=behavior)
    assert step.desired == 12


def test_default_scale_down_policy_allows_everything_at_once():
    behavior = behavior_from_spec({"scaleDown": {"stabilizationWindowSeconds": 0}})
    step = sync(History(), 0.0, current=9, metric=0, min_r=2, behavior=behavior)
    assert step.desired == 2
    assert step.conditions["ScalingLimited"][:2] == ("True", "TooFewReplicas")


def test_configured_scale_down_policy_one_pod_per_minute():
    behavior = behavior_from_spec({"scaleDown": {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}})
    history = History()
    step = sync(history, 0.0, current=5, metric=1, behavior=behavior)
    assert step.desired == 4
    assert step.conditions["ScalingLimited"][:2] == ("True", "ScaleDownLimit")
    record_scale_event(history, behavior, 0.0, 5, 4)
    assert sync(history, 30.0, current=4, metric=1, behavior=behavior).desired == 4
    assert sync(history, 61.0, current=4, metric=1, behavior=behavior).desired == 3


def test_select_policy_min_and_disabled():
    history = History()
    rules = behavior_from_spec({"scaleUp": {"selectPolicy": "Min"}}).scale_up
    assert scale_up_limit(2, history, rules, 0.0) == 4  # min(2 + 4, 2 × 2)
    rules = behavior_from_spec({"scaleUp": {"selectPolicy": "Disabled"}}).scale_up
    assert scale_up_limit(2, history, rules, 0.0) == 2
    down = behavior_from_spec({"scaleDown": {"selectPolicy": "Min", "policies": [
        {"type": "Pods", "value": 1, "periodSeconds": 60},
        {"type": "Percent", "value": 50, "periodSeconds": 60}]}}).scale_down
    assert scale_down_limit(10, history, down, 0.0) == 9  # the smaller change: -1 pod
    disabled = Behavior(behavior_from_spec({}).scale_up,
                        behavior_from_spec({"scaleDown": {"selectPolicy": "Disabled"}}).scale_down)
    assert limit_with_behavior(history, 0.0, 5, 1, 1, 10, disabled)[:2] == (5, "ScaleDownLimit")


def test_percent_policy_rounds_up_when_growing_and_down_when_shrinking():
    history = History()
    up = behavior_from_spec({"scaleUp": {"policies": [
        {"type": "Percent", "value": 10, "periodSeconds": 15}]}}).scale_up
    assert scale_up_limit(3, history, up, 0.0) == 4  # ceil(3.3)
    down = behavior_from_spec({"scaleDown": {"policies": [
        {"type": "Percent", "value": 10, "periodSeconds": 15}]}}).scale_down
    assert scale_down_limit(3, history, down, 0.0) == 2  # int(2.7)


def test_behavior_defaults():
    assert behavior_from_spec(None) is None
    behavior = behavior_from_spec({"scaleDown": {"stabilizationWindowSeconds": 60}})
    assert behavior.scale_down.window_s == 60
    assert behavior.scale_down.policies == (ScalingPolicy("Percent", 100, 15),)
    assert behavior.scale_up.window_s == 0
    assert set(behavior.scale_up.policies) == {ScalingPolicy("Pods", 4, 15),
                                               ScalingPolicy("Percent", 100, 15)}
    assert behavior_from_spec({}, downscale_window_s=120).scale_down.window_s == 120


# -- the KEDA side -----------------------------------------------------------------------------

def test_parse_walkthrough_scaled_object_with_defaults():
    so = parse_scaled_object(scaled_object(minReplicaCount=1, maxReplicaCount=10,
                                           pollingInterval=15, cooldownPeriod=60))
    assert (so.min_replicas, so.max_replicas, so.polling_s, so.cooldown_s) == (1, 10, 15, 60)
    assert so.hpa_name == "keda-hpa-dbos-app-scaledobject"
    assert (so.target.api_version, so.target.kind) == ("apps/v1", "Deployment")
    assert so.triggers[0].metric_name == "s0-metric-api-queue_length"
    defaults = parse_scaled_object(scaled_object())
    assert (defaults.min_replicas, defaults.hpa_min_replicas, defaults.max_replicas,
            defaults.polling_s, defaults.cooldown_s) == (0, 1, 100, 30, 300)


@pytest.mark.parametrize("spec, words", [
    ({"minReplicaCount": 5, "maxReplicaCount": 2}, "MinReplicaCount=5 must be less than"),
    ({"triggers": [{"type": "cron", "metadata": {}}]}, "no scaler found for type: cron"),
    ({"triggers": [{"type": "metrics-api", "metadata": {"url": "http://x"}}]},
     "no valueLocation given"),
    ({"scaleTargetRef": {}}, "scaleTargetRef"),
    ({"triggers": []}, "no triggers"),
])
def test_parse_rejects_what_keda_rejects(spec, words):
    with pytest.raises(SpecError, match=words):
        parse_scaled_object(scaled_object(**spec))


def test_hpa_manifest_matches_keda():
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    obj = scaled_object(minReplicaCount=0, maxReplicaCount=10,
                        advanced={"horizontalPodAutoscalerConfig": {"behavior": behavior}})
    hpa = hpa_manifest(parse_scaled_object(obj), obj)
    meta, spec = hpa["metadata"], hpa["spec"]
    assert meta["name"] == "keda-hpa-dbos-app-scaledobject"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "keda-operator"
    assert meta["labels"]["scaledobject.keda.sh/name"] == "dbos-app-scaledobject"
    assert meta["labels"]["team"] == "a"
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("ScaledObject", "u-1", True)
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 10)
    assert spec["behavior"] == behavior
    external = spec["metrics"][0]["external"]
    assert external["metric"]["name"] == "s0-metric-api-queue_length"
    assert external["target"] == {"type": "AverageValue", "averageValue": "2"}


def test_metric_label_is_the_hpa_controllers_wording():
    so = parse_scaled_object(scaled_object())
    assert metric_label(so.triggers[0], so.name) == (
        "external metric s0-metric-api-queue_length(&LabelSelector{MatchLabels:map[string]string"
        "{scaledobject.keda.sh/name: dbos-app-scaledobject,},MatchExpressions:"
        "[]LabelSelectorRequirement{},})")


def test_value_at_dotted_paths_and_quantities():
    assert value_at({"queue_length": 7}, "queue_length") == 7
    assert value_at({"a": {"b": [{"c": 1}, {"c": 2.5}]}}, "a.b.1.c") == 2.5
    assert value_at({"v": "500m"}, "v") == 0.5
    for doc in ({"v": "seven"}, {"v": None}, {}, {"v": True}, {"v": {"x": 1}}):
        with pytest.raises(ValueError, match="valueLocation must point to value"):
            value_at(doc, "v")


def test_quantities():
    assert parse_quantity("2") == 2 and parse_quantity("1.5k") == 1500
    assert parse_quantity("250m") == 0.25 and parse_quantity("1Ki") == 1024
    assert [format_quantity(v) for v in (2, 3.5, 0, 1500, 3000, 2e6)] == [
        "2", "3500m", "0", "1500", "3k", "2M"]


@pytest.mark.parametrize("url, where", [
    ("http://dbos-app.dbos.svc.cluster.local:8080/metrics/taskQueue?x=1",
     "/api/v1/namespaces/dbos/services/dbos-app:8080/proxy/metrics/taskQueue?x=1"),
    ("http://dbos-app.dbos.svc/metrics",
     "/api/v1/namespaces/dbos/services/dbos-app:80/proxy/metrics"),
    ("https://q.ns:8443/m", "/api/v1/namespaces/ns/services/https:q:8443/proxy/m"),
    ("http://127.0.0.1:9000/metrics", None),
    ("http://localhost:9000/metrics", None),
    ("http://metrics.example.org.internal/m", None),
])
def test_cluster_urls_go_through_the_service_proxy(url, where):
    target = cluster_url(url)
    assert (target.proxy_path() if target else None) == where


def test_fallback_stands_in_for_a_failing_trigger_after_the_threshold():
    obj = scaled_object(fallback={"failureThreshold": 2, "replicas": 6})
    so = parse_scaled_object(obj)
    loop = ScaledObjectLoop(None, obj)
    name = so.triggers[0].metric_name
    loop.triggers[name] = TriggerState(failures=2)
    assert loop.hpa_metric_values(so, {name: None}) == {name: None}
    assert not loop.fallback_active(so)
    loop.triggers[name] = TriggerState(failures=3)
    answered = loop.hpa_metric_values(so, {name: None})
    assert answered == {name: 12.0}  # fallback replicas × target: the HPA then asks for 6
    assert external_metric_replicas(answered[name], 2, current=2) == 6
    assert loop.fallback_active(so)
    with pytest.raises(SpecError, match="AverageValue"):
        obj["spec"]["triggers"][0]["metricType"] = "Value"
        parse_scaled_object(obj)
