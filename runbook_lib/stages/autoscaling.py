"""Autoscaling: the walkthrough's KEDA ScaledObject, checked, then exercised by a load test.

KEDA polls the app's ``/metrics/<queue>`` through the Service's cluster URL and feeds the HPA it
creates (``keda-hpa-<name>``): desired replicas = ceil(queue length / target value), where the
target is the queue's worker concurrency. With ``minReplicaCount: 1``, scaling N -> 1 is the
HPA's, governed by its scale-down stabilization window (300 s by default), not by KEDA's
``cooldownPeriod``, which only governs scaling to zero. The ScaledObject therefore sets
``advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds`` from
the parameters, which gives the walkthrough its intended one-minute scale-down.

The load test enqueues N workflows of S seconds, then samples queue depth and desired and ready
replicas until the queue drains and the replicas are back at the minimum; the record keeps the
table and a plot, and two checks: the peak matches ceil(queue / target) clamped to the maximum,
and every workflow the test enqueued ended SUCCESS.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from runbook_lib import kube, manifests
from runbook_lib.errors import TargetError
from runbook_lib.outcome import Outcome, Report
from runbook_lib.progress import Status, wait_for
from runbook_lib.stages.common import kube_api

log = logging.getLogger("runbook_lib.stages.autoscaling")

TOLERANCE = 0.1  # the HPA's default


def render(stage) -> dict:
    params = stage.params
    obj = manifests.scaled_object(params, params.app.version)
    manifests.validate([obj], params.cluster.version)
    stage.write_artifact("keda-scaledobject.yaml", manifests.to_yaml([obj]))
    return obj


def apply(stage, obj: dict) -> list[Outcome]:
    return stage.show([kube.apply(kube_api(stage), obj)])


def hpa_name(params) -> str:
    return f"keda-hpa-{params.autoscaling.scaled_object}"


def verify(stage) -> dict:
    """Wait for the ScaledObject to be Ready; check the HPA KEDA made from it."""
    params = stage.params
    api = kube_api(stage)
    ns, a = params.app.namespace, params.autoscaling

    def ready() -> Status:
        obj = kube.get(api, "keda.sh/v1alpha1", "ScaledObject", ns, a.scaled_object)
        conditions = {c.get("type"): c for c in ((obj or {}).get("status") or {})
                      .get("conditions", [])}
        cond = conditions.get("Ready", {})
        hpa = kube.get(api, "autoscaling/v2", "HorizontalPodAutoscaler", ns, hpa_name(params))
        state = f"Ready={cond.get('status', 'Unknown')}, HPA {'present' if hpa else 'absent'}"
        return Status(cond.get("status") == "True" and hpa is not None, state)

    wait_for(f"ScaledObject {ns}/{a.scaled_object}", ready, params.timeouts.rollout, 0.5)
    hpa = kube.get(api, "autoscaling/v2", "HorizontalPodAutoscaler", ns, hpa_name(params))
    spec = hpa["spec"]
    metric = spec["metrics"][0]["external"]
    window = (spec.get("behavior") or {}).get("scaleDown", {}).get("stabilizationWindowSeconds")
    found = {
        "min": spec.get("minReplicas"), "max": spec.get("maxReplicas"),
        "target": metric["target"].get("averageValue"), "metric": metric["metric"]["name"],
        "scale_down_window_s": window,
        "target_ref": f"{spec['scaleTargetRef']['kind']}/{spec['scaleTargetRef']['name']}",
    }
    wanted = {"min": a.min_replicas, "max": a.max_replicas, "target": str(a.target_value),
              "scale_down_window_s": int(a.scale_down_window)}
    problems = [f"{k}: HPA has {found[k]!r}, expected {v!r}" for k, v in wanted.items()
                if str(found[k]) != str(v)]
    print(f"HPA {hpa_name(params)}: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    if problems:
        raise TargetError("the HPA does not match the ScaledObject: " + "; ".join(problems))
    return Report(found)


@dataclass
class Sample:
    t: float
    queue: int
    desired: int
    ready: int


def _sample(api, params, start: float) -> Sample:
    ns = params.app.namespace
    name = manifests.deployment_name(params, params.app.version)
    metrics = kube.service_json(api, ns, params.app.name, params.app.port,
                                f"/metrics/{params.app.queue}")
    dep = kube.get(api, "apps/v1", "Deployment", ns, name) or {}
    return Sample(round(time.monotonic() - start, 1), int(metrics["queue_length"]),
                  int(dep.get("spec", {}).get("replicas", 0)),
                  int(dep.get("status", {}).get("readyReplicas", 0) or 0))


def enqueue(stage, count: int, seconds: float, version_note: str = "") -> list[str]:
    """Enqueue ``count`` workflows of ``seconds`` through the Service; return their IDs."""
    params = stage.params
    api = kube_api(stage)
    ids = []
    for _ in range(count):
        reply = kube.service_json(api, params.app.namespace, params.app.name, params.app.port,
                                  f"/enqueue/{seconds:g}")
        ids.append(reply["workflow_id"])
    print(f"enqueued {count} workflows of {seconds:g} s{version_note}")
    return ids


def load_test(stage) -> dict:
    """Enqueue the load, follow queue depth and replicas until it settles, check the outcome."""
    params = stage.params
    a, lt = params.autoscaling, params.load_test
    api = kube_api(stage)
    start = time.monotonic()
    ids = enqueue(stage, lt.workflows, lt.seconds)
    samples: list[Sample] = []

    def settled() -> Status:
        sample = _sample(api, params, start)
        samples.append(sample)
        drained = sample.queue == 0 and len(samples) > 1
        done = drained and sample.desired == a.min_replicas and sample.ready == a.min_replicas
        return Status(done, f"queue {sample.queue}, desired {sample.desired}, "
                            f"ready {sample.ready}")

    wait_for("the load to drain and the replicas to return to the minimum", settled,
             lt.settle_timeout, 0.5)
    return _report(stage, samples, ids)


def _report(stage, samples: list[Sample], ids: list[str]) -> dict:
    params = stage.params
    a = params.autoscaling
    api = kube_api(stage)
    table = ["| t (s) since the burst | queue | desired | ready |", "|---:|---:|---:|---:|"]
    table += [f"| {s.t:.1f} | {s.queue} | {s.desired} | {s.ready} |" for s in samples]
    stage.write_artifact("load-test.md", "\n".join(table) + "\n")
    _plot(stage, samples)

    peak_queue = max(s.queue for s in samples)
    peak_desired = max(s.desired for s in samples)
    expected = min(a.max_replicas, max(a.min_replicas, math.ceil(peak_queue / a.target_value)))
    # Within the HPA's tolerance: a ratio within 10% of the current size does not rescale.
    low = min(a.max_replicas, max(a.min_replicas,
                                  math.ceil(peak_queue / (a.target_value * (1 + TOLERANCE)))))
    # How fast the autoscaler followed: from the burst to the peak, and from an empty queue
    # back to the minimum (the stabilization window).
    reached = next(s.t for s in samples if s.desired == peak_desired)
    # The queue emptied after the last sample that still saw work.
    busy = [s.t for s in samples if s.queue > 0]
    empty = busy[-1] if busy else None
    back = next((s.t for s in samples if empty is not None and s.t > empty
                 and s.desired == a.min_replicas), None)
    statuses = {}
    for workflow_id in ids:
        reply = kube.service_json(api, params.app.namespace, params.app.name, params.app.port,
                                  f"/workflows/{workflow_id}")
        statuses[reply["status"]] = statuses.get(reply["status"], 0) + 1
    print("\n".join(table[:2] + table[2:][:: max(1, len(samples) // 20)]))
    print(f"peak queue {peak_queue}, peak desired replicas {peak_desired}, expected "
          f"ceil({peak_queue}/{a.target_value}) clamped to [{a.min_replicas}, "
          f"{a.max_replicas}] = {expected}")
    print(f"workflow outcomes: {statuses}")
    print(f"scale-up: peak reached {reached:.0f} s after the burst (polling every "
          f"{a.polling_interval:g} s); scale-down: back to {a.min_replicas} "
          f"{(back - empty) if back is not None and empty is not None else float('nan'):.0f} s "
          f"after the queue emptied (window {a.scale_down_window:g} s)")
    problems = []
    if not low <= peak_desired <= expected:
        problems.append(f"peak desired replicas {peak_desired} is not {expected} (or within the "
                        f"HPA's tolerance, {low})")
    if statuses.get("SUCCESS", 0) != len(ids):
        problems.append(f"not every workflow ended SUCCESS: {statuses}")
    stage.publish(load_test_scale_up_s=f"{reached:.1f}",
                  load_test_scale_down_s=f"{(back or 0) - (empty or 0):.1f}",
                  load_test_peak_replicas=str(peak_desired),
                  load_test_workflows=f"{statuses.get('SUCCESS', 0)}/{len(ids)} SUCCESS")
    if problems:
        raise TargetError("the load test failed: " + "; ".join(problems))
    print("checks passed: the peak matches the HPA arithmetic, and scaling down lost no work")
    return Report(peak_queue=peak_queue, peak_desired=peak_desired, expected=expected,
                  statuses=statuses, samples=len(samples), scale_up_s=reached,
                  scale_down_s=(back - empty) if back is not None and empty is not None
                  else None)


def _plot(stage, samples: list[Sample]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    t = [s.t for s in samples]
    ax.step(t, [s.queue for s in samples], where="post", label="queue depth")
    ax.step(t, [s.desired for s in samples], where="post", label="desired replicas")
    ax.step(t, [s.ready for s in samples], where="post", label="ready replicas")
    ax.set_xlabel("seconds since the load was enqueued")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = stage.artifacts_dir / "load-test.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is not None:
        display(Image(filename=str(path)))
