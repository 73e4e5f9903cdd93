"""The sandbox's Deployment and ReplicaSet controllers.

A Deployment owns one ReplicaSet per pod template (named ``<deployment>-<pod-template-hash>``,
with a ``deployment.kubernetes.io/revision`` annotation); a ReplicaSet owns its pods (created
with ``generateName``). On a template change the Deployment controller rolls over with the
RollingUpdate arithmetic of Kubernetes (maxSurge and maxUnavailable, 25% each by default) or
Recreate; a change of ``spec.replicas`` (the ``/scale`` subresource writes it) scales the current
ReplicaSet. Both controllers write the status fields ``kubectl rollout status`` and
``kubectl get`` read. Deletion cascades through ownerReferences, which the API server collects.

Differences from Kubernetes, on purpose or for size: the pod-template hash is FNV-1a over the
template's canonical JSON rather than over Go's object dump (same shape, different digits);
scaling during a rollout is not proportional across ReplicaSets (the newest absorbs the change);
orphaned ReplicaSets and pods are not adopted.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time

from runbook_lib.sandbox.controllers.client import (
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    ApiClient,
    ApiError,
)
from runbook_lib.sandbox.controllers.events import EventRecorder
from runbook_lib.sandbox.controllers.informer import Informer, WorkQueue
from runbook_lib.sandbox.controllers.util import (
    controller_ref,
    int_or_percent,
    is_terminating,
    key_of,
    meta,
    now_rfc3339,
    owned_by,
    owner_reference,
    parse_time,
    pod_condition,
    pod_is_active,
    pod_is_available,
    pod_is_ready,
    set_condition,
)

log = logging.getLogger("runbook_lib.sandbox.controllers.deployment")

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Annotations of a Deployment that are not copied onto its ReplicaSets.
_NOT_COPIED = ("kubectl.kubernetes.io/last-applied-configuration", REVISION,
               "deployment.kubernetes.io/revision-history", DESIRED_REPLICAS, MAX_REPLICAS)


def template_hash(template: dict, collision_count: int | None = None) -> str:
    """The pod-template-hash of ``template``: FNV-1a 32 of its canonical JSON, safe-encoded."""
    data = json.dumps(_without_hash(template), sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += int(collision_count).to_bytes(4, "little")
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(SAFE_ALPHABET[b % len(SAFE_ALPHABET)] for b in str(value).encode())


def _without_hash(template: dict) -> dict:
    result = copy.deepcopy(template or {})
    labels = (result.get("metadata") or {}).get("labels")
    if labels and HASH_LABEL in labels:
        del labels[HASH_LABEL]
    return result


def _same_template(a: dict, b: dict) -> bool:
    return _without_hash(a) == _without_hash(b)


def _replicas(obj: dict) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _status(obj: dict, field: str) -> int:
    return int((obj.get("status") or {}).get(field) or 0)


def _revision(rs: dict) -> int:
    try:
        return int((meta(rs).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _status_patch(old: dict, new: dict) -> dict:
    """A merge patch turning status ``old`` into ``new`` (removed fields become null)."""
    patch = {k: v for k, v in new.items() if old.get(k) != v}
    patch.update({k: None for k in old if k not in new})
    return patch


class ReplicaSetController:
    """Keeps each ReplicaSet's number of active pods at ``spec.replicas``."""

    def __init__(self, client: ApiClient, replicasets: Informer, pods: Informer,
                 events: EventRecorder):
        self.client = client
        self.replicasets = replicasets
        self.pods = pods
        self.events = events
        self.queue = WorkQueue("replicaset", self.reconcile)
        replicasets.add_handler(lambda _t, rs, _o: self.queue.add(key_of(rs)))
        pods.add_handler(self._on_pod)

    def _on_pod(self, _kind: str, pod: dict, _old: dict | None) -> None:
        ref = controller_ref(pod)
        if ref and ref.get("kind") == "ReplicaSet":
            self.queue.add((meta(pod).get("namespace", ""), ref.get("name", "")))

    def resync(self) -> None:
        for rs in self.replicasets.all():
            self.queue.add(key_of(rs))

    async def reconcile(self, key: tuple[str, str]) -> None:
        namespace, name = key
        rs = self.replicasets.get(namespace, name)
        if rs is None or is_terminating(rs):
            return
        pods = [p for p in self.pods.in_namespace(namespace) if owned_by(p, rs)]
        active = [p for p in pods if pod_is_active(p)]
        diff = _replicas(rs) - len(active)

        if diff > 0:
            await asyncio.gather(*(self._create_pod(rs) for _ in range(diff)))
        elif diff < 0:
            victims = sorted(active, key=_deletion_rank)[: -diff]
            await asyncio.gather(*(self._delete_pod(rs, pod) for pod in victims))

        await self._update_status(rs)

    async def _create_pod(self, rs: dict) -> None:
        template = (rs.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        namespace = meta(rs)["namespace"]
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "generateName": meta(rs)["name"] + "-", "namespace": namespace,
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [owner_reference(rs, "ReplicaSet", "apps/v1")],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        if not body["metadata"]["annotations"]:
            del body["metadata"]["annotations"]
        try:
            pod = await self.client.create(PODS.path(namespace), body)
        except ApiError as exc:
            self.events.record(rs, "ReplicaSet", "FailedCreate", f"Error creating: {exc}",
                               "Warning", component="replicaset-controller")
            raise
        self.pods.remember(pod)
        self.events.record(rs, "ReplicaSet", "SuccessfulCreate",
                           f"Created pod: {meta(pod).get('name')}",
                           component="replicaset-controller")

    async def _delete_pod(self, rs: dict, pod: dict) -> None:
        namespace, name = key_of(pod)
        answer = await self.client.delete(PODS.path(namespace, name), uid=meta(pod).get("uid"))
        if answer and answer.get("kind") == "Pod":
            self.pods.remember(answer)
        else:
            self.pods.forget(namespace, name)
        self.events.record(rs, "ReplicaSet", "SuccessfulDelete", f"Deleted pod: {name}",
                           component="replicaset-controller")

    async def _update_status(self, rs: dict) -> None:
        namespace, name = key_of(rs)
        rs = self.replicasets.get(namespace, name) or rs
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        now = time.time()
        active = [p for p in self.pods.in_namespace(namespace)
                  if owned_by(p, rs) and pod_is_active(p)]
        template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get(
            "labels") or {}
        ready = [p for p in active if pod_is_ready(p)]
        available = [p for p in active if pod_is_available(p, min_ready, now)]
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1 for p in active
                if all((meta(p).get("labels") or {}).get(k) == v
                       for k, v in template_labels.items())),
            "readyReplicas": len(ready),
            "availableReplicas": len(available),
            "observedGeneration": meta(rs).get("generation", 1),
        }
        status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
        patch = _status_patch(rs.get("status") or {}, status)
        if patch:
            updated = await self.client.merge_patch(
                REPLICASETS.path(namespace, name, "status"), {"status": patch})
            self.replicasets.remember(updated)
        if len(available) < len(ready):
            # Pods that are ready but not yet available become so after minReadySeconds.
            self.queue.add_after((namespace, name), min(min_ready, 5) or 1)


def _deletion_rank(pod: dict) -> tuple:
    """Sort key putting the pods a scale-down should remove first, as Kubernetes ranks them."""
    status = pod.get("status") or {}
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase"), 0)
    ready = pod_is_ready(pod)
    cond = pod_condition(pod, "Ready") or {}
    ready_since = parse_time(cond.get("lastTransitionTime")) or 0.0
    restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
    created = parse_time(meta(pod).get("creationTimestamp")) or 0.0
    try:
        cost = int((meta(pod).get("annotations") or {}).get(
            "controller.kubernetes.io/pod-deletion-cost", "0"))
    except ValueError:
        cost = 0
    return (
        1 if (pod.get("spec") or {}).get("nodeName") else 0,
        phase_rank,
        1 if ready else 0,
        cost,
        -ready_since if ready else 0.0,
        -restarts,
        -created,
    )


class DeploymentController:
    """Rolls Deployments over ReplicaSets and reports their rollout status."""

    def __init__(self, client: ApiClient, deployments: Informer, replicasets: Informer,
                 events: EventRecorder):
        self.client = client
        self.deployments = deployments
        self.replicasets = replicasets
        self.events = events
        self.queue = WorkQueue("deployment", self.reconcile)
        deployments.add_handler(lambda _t, d, _o: self.queue.add(key_of(d)))
        replicasets.add_handler(self._on_replicaset)

    def _on_replicaset(self, _kind: str, rs: dict, _old: dict | None) -> None:
        ref = controller_ref(rs)
        if ref and ref.get("kind") == "Deployment":
            self.queue.add((meta(rs).get("namespace", ""), ref.get("name", "")))

    def resync(self) -> None:
        for d in self.deployments.all():
            self.queue.add(key_of(d))

    async def reconcile(self, key: tuple[str, str]) -> None:
        namespace, name = key
        d = self.deployments.get(namespace, name)
        if d is None or is_terminating(d):
            return
        spec = d.get("spec") or {}
        rss = [rs for rs in self.replicasets.in_namespace(namespace)
               if owned_by(rs, d) and not is_terminating(rs)]

        # Find the ReplicaSet of the current template, creating it on a template change.
        new_rs = next((rs for rs in rss if _same_template(
            (rs.get("spec") or {}).get("template") or {}, spec.get("template") or {})), None)
        old_rss = [rs for rs in rss if rs is not new_rs]
        created = False
        if spec.get("paused"):
            await self._update_status(d, new_rs, old_rss, created=False)
            return
        if new_rs is None:
            new_rs = await self._create_replicaset(d, old_rss)
            if new_rs is None:
                return
            created = True
        else:
            new_rs = await self._sync_revision(d, new_rs, old_rss)

        # Move replicas between the old ReplicaSets and the new one.
        if ((spec.get("strategy") or {}).get("type") or "RollingUpdate") == "Recreate":
            await self._recreate(d, new_rs, old_rss)
        else:
            scaled = await self._reconcile_new(d, new_rs, old_rss)
            if not scaled:
                await self._reconcile_old(d, new_rs, old_rss)

        await self._cleanup_history(d, old_rss)
        await self._update_status(d, new_rs, old_rss, created)

    # -- ReplicaSets ----------------------------------------------------------------------------

    def _surge_and_unavailable(self, d: dict) -> tuple[int, int]:
        replicas = _replicas(d)
        rolling = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
        surge = int_or_percent(rolling.get("maxSurge", "25%"), replicas, round_up=True)
        unavailable = int_or_percent(rolling.get("maxUnavailable", "25%"), replicas,
                                     round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, min(unavailable, replicas)

    async def _create_replicaset(self, d: dict, old_rss: list[dict]) -> dict | None:
        namespace, name = key_of(d)
        spec = d["spec"]
        collisions = (d.get("status") or {}).get("collisionCount")
        pod_hash = template_hash(spec.get("template") or {}, collisions)
        template = copy.deepcopy(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        surge, _ = self._surge_and_unavailable(d)

        # Size it as the first step of a rollout (or the whole thing when nothing is running).
        replicas = _replicas(d)
        current = sum(_replicas(rs) for rs in old_rss)
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            initial = 0 if current else replicas
        else:
            initial = max(0, min(replicas + surge - current, replicas))
        annotations = {k: v for k, v in (meta(d).get("annotations") or {}).items()
                       if k not in _NOT_COPIED}
        annotations.update({
            REVISION: str(max([_revision(rs) for rs in old_rss], default=0) + 1),
            DESIRED_REPLICAS: str(replicas), MAX_REPLICAS: str(replicas + surge),
        })
        body = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": f"{name}-{pod_hash}", "namespace": namespace,
                "labels": dict(template["metadata"]["labels"]), "annotations": annotations,
                "ownerReferences": [owner_reference(d, "Deployment", "apps/v1")],
            },
            "spec": {
                "replicas": initial, "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector, "template": template,
            },
        }
        try:
            rs = await self.client.create(REPLICASETS.path(namespace), body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            return await self._on_name_taken(d, body)
        self.replicasets.remember(rs)
        self.events.record(d, "Deployment", "ScalingReplicaSet",
                           f"Scaled up replica set {meta(rs)['name']} from 0 to {initial}",
                           component="deployment-controller")
        log.debug("created ReplicaSet %s/%s", namespace, meta(rs)["name"])
        return rs

    async def _on_name_taken(self, d: dict, body: dict) -> dict | None:
        """A ReplicaSet of that name exists: ours with this template, or a hash collision."""
        namespace, name = key_of(d)
        existing = await self.client.get(REPLICASETS.path(namespace, body["metadata"]["name"]))
        if existing and owned_by(existing, d) and _same_template(
                existing["spec"].get("template") or {}, body["spec"]["template"]):
            self.replicasets.remember(existing)
            return existing
        count = int((d.get("status") or {}).get("collisionCount") or 0) + 1
        updated = await self.client.merge_patch(
            self._path(d, "status"), {"status": {"collisionCount": count}})
        self.deployments.remember(updated)
        self.queue.add((namespace, name))
        return None

    async def _sync_revision(self, d: dict, new_rs: dict, old_rss: list[dict]) -> dict:
        """A template rolled back to an old ReplicaSet makes it the newest revision again."""
        highest = max([_revision(rs) for rs in old_rss], default=0)
        if _revision(new_rs) > highest:
            return new_rs
        return await self._patch_rs(new_rs, {"metadata": {"annotations": {
            REVISION: str(highest + 1)}}})

    async def _patch_rs(self, rs: dict, patch: dict) -> dict:
        namespace, name = key_of(rs)
        updated = await self.client.merge_patch(REPLICASETS.path(namespace, name), patch)
        self.replicasets.remember(updated)
        return updated

    async def _scale(self, d: dict, rs: dict, replicas: int) -> dict:
        before = _replicas(rs)
        if before == replicas:
            return rs
        surge, _ = self._surge_and_unavailable(d)
        updated = await self._patch_rs(rs, {
            "metadata": {"annotations": {
                DESIRED_REPLICAS: str(_replicas(d)), MAX_REPLICAS: str(_replicas(d) + surge)}},
            "spec": {"replicas": replicas},
        })
        direction = "up" if replicas > before else "down"
        self.events.record(
            d, "Deployment", "ScalingReplicaSet",
            f"Scaled {direction} replica set {meta(rs)['name']} from {before} to {replicas}",
            component="deployment-controller")
        return updated

    # -- strategies -----------------------------------------------------------------------------

    async def _reconcile_new(self, d: dict, new_rs: dict, old_rss: list[dict]) -> bool:
        """Grow (or shrink) the new ReplicaSet as far as maxSurge allows; True if scaled."""
        replicas = _replicas(d)
        current_new = _replicas(new_rs)
        if current_new == replicas:
            return False
        if current_new > replicas:
            await self._scale(d, new_rs, replicas)
            return True
        surge, _ = self._surge_and_unavailable(d)
        total = sum(_replicas(rs) for rs in old_rss) + current_new
        room = replicas + surge - total
        if room <= 0:
            return False
        await self._scale(d, new_rs, current_new + min(room, replicas - current_new))
        return True

    async def _reconcile_old(self, d: dict, new_rs: dict, old_rss: list[dict]) -> bool:
        """Shrink the old ReplicaSets as far as maxUnavailable allows; True if scaled."""
        old_count = sum(_replicas(rs) for rs in old_rss)
        if old_count == 0:
            return False
        replicas = _replicas(d)
        _, max_unavailable = self._surge_and_unavailable(d)
        min_available = replicas - max_unavailable
        all_count = old_count + _replicas(new_rs)
        new_unavailable = _replicas(new_rs) - _status(new_rs, "availableReplicas")
        budget = all_count - min_available - new_unavailable
        if budget <= 0:
            return False
        scaled = False

        # First drop old replicas that are not available anyway: that costs no availability.
        ordered = sorted(old_rss, key=lambda rs: parse_time(meta(rs).get("creationTimestamp"))
                         or 0.0)
        for i, rs in enumerate(ordered):
            if budget <= 0:
                break
            unhealthy = _replicas(rs) - _status(rs, "availableReplicas")
            if unhealthy <= 0:
                continue
            cut = min(budget, unhealthy)
            ordered[i] = await self._scale(d, rs, _replicas(rs) - cut)
            budget -= cut
            scaled = True

        # Then scale down available old replicas while total availability stays at the minimum.
        available = sum(_status(rs, "availableReplicas") for rs in ordered + [new_rs])
        room = available - min_available
        for rs in ordered:
            if room <= 0:
                break
            cut = min(room, _replicas(rs))
            if cut <= 0:
                continue
            await self._scale(d, rs, _replicas(rs) - cut)
            room -= cut
            scaled = True
        return scaled

    async def _recreate(self, d: dict, new_rs: dict, old_rss: list[dict]) -> None:
        for rs in old_rss:
            if _replicas(rs) > 0:
                await self._scale(d, rs, 0)
        if any(_status(rs, "replicas") for rs in old_rss):
            return  # wait until every old pod is gone
        await self._scale(d, new_rs, _replicas(d))

    async def _cleanup_history(self, d: dict, old_rss: list[dict]) -> None:
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        idle = [rs for rs in old_rss if _replicas(rs) == 0 and _status(rs, "replicas") == 0]
        idle.sort(key=_revision)
        for rs in idle[: max(0, len(idle) - limit)]:
            namespace, name = key_of(rs)
            await self.client.delete(REPLICASETS.path(namespace, name), uid=meta(rs).get("uid"))
            self.replicasets.forget(namespace, name)

    # -- status ---------------------------------------------------------------------------------

    def _path(self, d: dict, sub: str | None = None) -> str:
        namespace, name = key_of(d)
        return DEPLOYMENTS.path(namespace, name, sub)

    async def _update_status(self, d: dict, new_rs: dict | None, old_rss: list[dict],
                             created: bool) -> None:
        namespace, name = key_of(d)
        d = self.deployments.get(namespace, name) or d
        if new_rs is not None:
            new_rs = self.replicasets.get(*key_of(new_rs)) or new_rs
        old_rss = [self.replicasets.get(*key_of(rs)) or rs for rs in old_rss]
        everything = old_rss + ([new_rs] if new_rs else [])
        old_status = d.get("status") or {}
        replicas = _replicas(d)
        _, max_unavailable = self._surge_and_unavailable(d)

        status = {
            "observedGeneration": meta(d).get("generation", 1),
            "replicas": sum(_status(rs, "replicas") for rs in everything),
            "updatedReplicas": _status(new_rs, "replicas") if new_rs else 0,
            "readyReplicas": sum(_status(rs, "readyReplicas") for rs in everything),
            "availableReplicas": sum(_status(rs, "availableReplicas") for rs in everything),
        }
        status["unavailableReplicas"] = max(replicas - status["availableReplicas"], 0)
        status = {k: v for k, v in status.items() if v or k == "observedGeneration"}
        if old_status.get("collisionCount") is not None:
            status["collisionCount"] = old_status["collisionCount"]

        now = now_rfc3339()
        conditions = old_status.get("conditions") or []
        if status.get("availableReplicas", 0) >= replicas - max_unavailable:
            conditions = set_condition(conditions, "Available", "True",
                                       "MinimumReplicasAvailable",
                                       "Deployment has minimum availability.", now, True)
        else:
            conditions = set_condition(conditions, "Available", "False",
                                       "MinimumReplicasUnavailable",
                                       "Deployment does not have minimum availability.", now,
                                       True)
        conditions = self._progressing(d, new_rs, status, old_status, conditions, created, now)
        status["conditions"] = conditions

        patch = _status_patch(old_status, status)
        if not patch:
            return
        updated = await self.client.merge_patch(self._path(d, "status"), {"status": patch})
        self.deployments.remember(updated)

    def _progressing(self, d: dict, new_rs: dict | None, status: dict, old_status: dict,
                     conditions: list[dict], created: bool, now: str) -> list[dict]:
        spec = d.get("spec") or {}
        replicas = _replicas(d)
        rs_name = meta(new_rs).get("name") if new_rs else ""
        old = next((c for c in conditions if c.get("type") == "Progressing"), None)
        if spec.get("paused"):
            return set_condition(conditions, "Progressing", "Unknown", "DeploymentPaused",
                                 "Deployment is paused", now, True)
        complete = (status.get("updatedReplicas", 0) == replicas
                    and status.get("replicas", 0) == replicas
                    and status.get("availableReplicas", 0) == replicas)
        if complete:
            return set_condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                                 f'ReplicaSet "{rs_name}" has successfully progressed.', now, True)
        if created:
            return set_condition(conditions, "Progressing", "True", "NewReplicaSetCreated",
                                 f'Created new replica set "{rs_name}"', now, True)
        progressed = any(status.get(f, 0) != old_status.get(f, 0) for f in
                         ("updatedReplicas", "readyReplicas", "availableReplicas", "replicas"))
        if progressed or old is None or old.get("reason") == "NewReplicaSetAvailable":
            result = set_condition(conditions, "Progressing", "True", "ReplicaSetUpdated",
                                   f'ReplicaSet "{rs_name}" is progressing.', now, True)
            for cond in result:
                if cond["type"] == "Progressing":
                    cond["lastUpdateTime"] = now
            return result
        deadline = int(spec.get("progressDeadlineSeconds") or 600)
        last = parse_time(old.get("lastUpdateTime")) or time.time()
        if old.get("status") == "True" and last + deadline < time.time():
            return set_condition(conditions, "Progressing", "False", "ProgressDeadlineExceeded",
                                 f'ReplicaSet "{rs_name}" has timed out progressing.', now, True)
        if old.get("status") == "True":
            self.queue.add_after(key_of(d), max(1.0, last + deadline - time.time()))
        return conditions
