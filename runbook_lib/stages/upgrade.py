"""Versioned upgrade: the walkthrough's "Upgrading Workflow Code" by application versioning.

A worker only dequeues and recovers workflows of its own application version, so an upgrade
runs the new version beside the old one: deploy v2 as its own Deployment, point the Service
selector (and the ScaledObject) at v2 only, so new requests and new workflows go to v2, keep v1
running while it still has ENQUEUED or PENDING workflows of its version, then delete v1. Each
step goes into the record with the counts it waited on.
"""

from __future__ import annotations

import logging
import time

from runbook_lib import kube, manifests
from runbook_lib.errors import TargetError
from runbook_lib.outcome import Outcome, Report, Text
from runbook_lib.progress import Status, wait_for
from runbook_lib.stages import autoscaling, deployment, infrastructure
from runbook_lib.stages.common import kube_api

log = logging.getLogger("runbook_lib.stages.upgrade")


def _names(stage) -> tuple[str, str]:
    u = stage.params.upgrade
    return (manifests.deployment_name(stage.params, u.from_version),
            manifests.deployment_name(stage.params, u.to_version))


def old_version_running(stage) -> bool:
    old, _ = _names(stage)
    return kube.get(kube_api(stage), "apps/v1", "Deployment", stage.params.app.namespace,
                    old) is not None


def start_inflight(stage) -> list[str]:
    """Long workflows on the old version, to show that the upgrade drains before deleting."""
    u = stage.params.upgrade
    if not old_version_running(stage):
        print(f"{u.from_version} is not running: nothing in flight to drain")
        return []
    return autoscaling.enqueue(stage, u.inflight_workflows, u.inflight_seconds,
                               f" on {u.from_version}")


def build_new_image(stage) -> list[Outcome]:
    return infrastructure.images(stage, stage.params.upgrade.to_version, ("app_repository",))


def deploy_new_version(stage) -> list[Outcome]:
    """The new version's Deployment beside the old one; wait until it is ready."""
    u = stage.params.upgrade
    objects = deployment.render(stage, version=u.to_version)
    new = objects[0]
    outcomes = stage.show([kube.apply(kube_api(stage), new)])
    deployment.wait_ready(stage, u.to_version)
    return outcomes


def switch_traffic(stage) -> list[Outcome]:
    """Point the Service and the ScaledObject at the new version only."""
    params = stage.params
    u = params.upgrade
    api = kube_api(stage)
    service = manifests.app_service(params, u.to_version)
    scaled = manifests.scaled_object(params, u.to_version)
    manifests.validate([service, scaled], params.cluster.version)
    stage.write_artifact(f"service-{u.to_version}.yaml", manifests.to_yaml([service, scaled]))
    outcomes = [kube.apply(api, service)]
    if kube.get(api, "keda.sh/v1alpha1", "ScaledObject", params.app.namespace,
                params.autoscaling.scaled_object) is not None:
        outcomes.append(kube.apply(api, scaled))
    return stage.show(outcomes)


def active_count(stage, version: str) -> int:
    """ENQUEUED plus PENDING workflows of ``version`` (asked of any replica: it is in the DB)."""
    params = stage.params
    reply = kube.service_json(kube_api(stage), params.app.namespace, params.app.name,
                              params.app.port, "/workflows",
                              {"version": version, "status": "ENQUEUED,PENDING"})
    return int(reply["count"])


def drain_old_version(stage, inflight: list[str]) -> list[tuple[float, int]]:
    """Wait while the old version still has ENQUEUED or PENDING workflows; record the counts."""
    params = stage.params
    u = params.upgrade
    if not old_version_running(stage):
        print(f"{u.from_version} is not running: nothing to drain")
        return []
    counts: list[tuple[float, int]] = []
    start = time.monotonic()

    def drained() -> Status:
        count = active_count(stage, u.from_version)
        counts.append((round(time.monotonic() - start, 1), count))
        return Status(count == 0, f"{count} ENQUEUED or PENDING workflows of {u.from_version}")

    wait_for(f"{u.from_version} to finish its workflows", drained,
             params.timeouts.rollout + u.inflight_seconds * 2, 1.0)
    lines = ["| t (s) | active workflows of " + u.from_version + " |", "|---:|---:|"]
    lines += [f"| {t:.1f} | {n} |" for t, n in counts]
    stage.write_artifact("drain.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    api = kube_api(stage)
    outcomes = {}
    for workflow_id in inflight:
        reply = kube.service_json(api, params.app.namespace, params.app.name, params.app.port,
                                  f"/workflows/{workflow_id}")
        outcomes[reply["status"]] = outcomes.get(reply["status"], 0) + 1
    if inflight:
        print(f"in-flight workflows of {u.from_version}: {outcomes}")
        if outcomes.get("SUCCESS", 0) != len(inflight):
            raise TargetError(f"in-flight workflows of {u.from_version} did not all succeed: "
                              f"{outcomes}")
    return Text("\n".join(lines)) if counts else Text("")


def retire_old_version(stage) -> list[Outcome]:
    params = stage.params
    old, _ = _names(stage)
    return stage.show([kube.delete(kube_api(stage), "apps/v1", "Deployment",
                                   params.app.namespace, old, params.deployment_id,
                                   wait_s=params.timeouts.rollout)])


def verify_new_version_serves(stage, probes: int = 10) -> dict:
    """New requests reach only the new version."""
    params = stage.params
    seen: dict[str, int] = {}
    for _ in range(probes):
        reply = kube.service_json(kube_api(stage), params.app.namespace, params.app.name,
                                  params.app.port, "/version")
        seen[reply["app_version"]] = seen.get(reply["app_version"], 0) + 1
    print(f"{probes} requests through the Service were answered by versions: {seen}")
    if set(seen) != {params.upgrade.to_version}:
        raise TargetError(f"requests reached {sorted(seen)}, not only "
                          f"{params.upgrade.to_version}")
    stage.publish(serving_version=params.upgrade.to_version)
    print(f"From now on, deploy with app.version: {params.upgrade.to_version} in the "
          "parameters.")
    return Report(seen)
