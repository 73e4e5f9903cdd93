"""The sandbox's Job controller.

Runs a Job's pods until enough succeed or the Job gives up, and writes the status Kubernetes 1.31
writes: ``active``, ``ready``, ``terminating``, ``succeeded``, ``failed``, ``startTime``,
``completionTime``, and the conditions ``SuccessCriteriaMet`` then ``Complete`` (reason
CompletionsReached), or ``FailureTarget`` then ``Failed`` (reason BackoffLimitExceeded or
DeadlineExceeded) once the Job's remaining pods have terminated.

With ``restartPolicy: OnFailure`` the kubelet restarts the failed container in place, and the
restarts of the Job's active pods count toward ``backoffLimit`` (default 6); with ``Never`` each
failure is a failed pod and a new pod follows after a back-off. Kubernetes waits 10 s doubling to
6 min between such pods; the sandbox waits 1 s doubling to 20 s. ``activeDeadlineSeconds``,
``ttlSecondsAfterFinished``, ``suspend``, ``completions`` and ``parallelism`` (non-indexed) are
honoured; indexed Jobs, pod failure policies and success policies are not. Counts come from the
pods that exist (no tracking finalizers), never decreasing.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time

from runbook_lib.sandbox.controllers.client import JOBS, PODS, ApiClient, ApiError
from runbook_lib.sandbox.controllers.events import EventRecorder
from runbook_lib.sandbox.controllers.informer import Informer, WorkQueue
from runbook_lib.sandbox.controllers.util import (
    controller_ref,
    is_terminating,
    key_of,
    meta,
    now_rfc3339,
    owned_by,
    owner_reference,
    parse_time,
    pod_is_active,
    pod_is_ready,
)

log = logging.getLogger("runbook_lib.sandbox.controllers.job")

BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")


def _condition(job: dict, kind: str) -> dict | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def _finished(job: dict) -> bool:
    return _condition(job, "Complete") is not None or _condition(job, "Failed") is not None


def _restarts(pod: dict) -> int:
    status = pod.get("status") or {}
    return sum(int(c.get("restartCount") or 0) for c in
               (status.get("containerStatuses") or []) + (status.get("initContainerStatuses")
                                                          or []))


def _finished_at(pod: dict) -> float:
    times = [parse_time(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
             for c in (pod.get("status") or {}).get("containerStatuses") or []]
    times = [t for t in times if t]
    return max(times) if times else (parse_time(meta(pod).get("creationTimestamp")) or 0.0)


class JobController:
    def __init__(self, client: ApiClient, jobs: Informer, pods: Informer, events: EventRecorder,
                 backoff_base_s: float = 1.0, backoff_cap_s: float = 20.0):
        self.client = client
        self.jobs = jobs
        self.pods = pods
        self.events = events
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.queue = WorkQueue("job", self.reconcile)
        jobs.add_handler(lambda _t, job, _o: self.queue.add(key_of(job)))
        pods.add_handler(self._on_pod)

    def _on_pod(self, _kind: str, pod: dict, _old: dict | None) -> None:
        ref = controller_ref(pod)
        if ref and ref.get("kind") == "Job":
            self.queue.add((meta(pod).get("namespace", ""), ref.get("name", "")))

    def resync(self) -> None:
        for job in self.jobs.all():
            self.queue.add(key_of(job))

    async def reconcile(self, key: tuple[str, str]) -> None:
        namespace, name = key
        job = self.jobs.get(namespace, name)
        if job is None or is_terminating(job):
            return
        if _finished(job):
            await self._after_finish(job)
            return
        spec = job.get("spec") or {}
        old_status = job.get("status") or {}
        pods = [p for p in self.pods.in_namespace(namespace) if owned_by(p, job)]
        def phase(p):
            return (p.get("status") or {}).get("phase")
        active = [p for p in pods if pod_is_active(p)]
        now = time.time()
        status = {
            "startTime": old_status.get("startTime"),
            "succeeded": max(int(old_status.get("succeeded") or 0),
                             sum(1 for p in pods if phase(p) == "Succeeded")),
            "failed": max(int(old_status.get("failed") or 0),
                          sum(1 for p in pods if phase(p) == "Failed")),
            "conditions": list(old_status.get("conditions") or []),
        }

        # A suspended Job runs nothing and its clock does not start.
        if spec.get("suspend"):
            await self._delete_pods(job, active)
            status["conditions"] = self._set(status["conditions"], "Suspended", "JobSuspended",
                                             "Job suspended")
            await self._write_status(job, status, self._current(job))
            return
        status["conditions"] = [c for c in status["conditions"] if c.get("type") != "Suspended"]
        if not status["startTime"]:
            status["startTime"] = now_rfc3339()

        # Decide whether the Job has failed: too many failures, or out of time.
        failure = self._failure(job, status, active, now)
        if failure:
            if not _condition(job, "FailureTarget"):
                status["conditions"] = self._set(status["conditions"], "FailureTarget", *failure)
                self.events.record(job, "Job", failure[0], failure[1], "Warning",
                                   component="job-controller")
            status["failed"] += len(active)
            await self._delete_pods(job, active)
            if not any(is_terminating(p) and phase(p) not in ("Succeeded", "Failed")
                       for p in self._current(job)):
                status["conditions"] = self._set(status["conditions"], "Failed", *failure)
            await self._write_status(job, status, self._current(job))
            return

        # Decide whether it has succeeded.
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        if completions is None:
            complete = status["succeeded"] >= 1 and not active
            wanted = 0 if status["succeeded"] >= 1 else parallelism
        else:
            complete = status["succeeded"] >= int(completions)
            wanted = max(0, min(parallelism, int(completions) - status["succeeded"]))
        if complete:
            status["conditions"] = self._set(status["conditions"], "SuccessCriteriaMet",
                                             *COMPLETIONS_REACHED)
            await self._delete_pods(job, active)
            if not any(is_terminating(p) for p in self._current(job)):
                status["conditions"] = self._set(status["conditions"], "Complete",
                                                 *COMPLETIONS_REACHED)
                status["completionTime"] = now_rfc3339()
                self.events.record(job, "Job", "Completed", "Job completed",
                                   component="job-controller")
            await self._write_status(job, status, self._current(job))
            return

        # Otherwise keep the wanted number of pods running, after a back-off once pods failed.
        missing = wanted - len(active)
        if missing > 0:
            delay = self._backoff_remaining(job, pods, status["failed"], now)
            if delay > 0:
                self.queue.add_after(key, delay)
            else:
                await asyncio.gather(*(self._create_pod(job) for _ in range(missing)))
        elif missing < 0:
            await self._delete_pods(job, active[:-missing])
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None:
            started = parse_time(status["startTime"]) or now
            self.queue.add_after(key, max(0.1, started + int(deadline) - now))
        await self._write_status(job, status, self._current(job))

    def _current(self, job: dict) -> list[dict]:
        return [p for p in self.pods.in_namespace(meta(job)["namespace"]) if owned_by(p, job)]

    def _failure(self, job: dict, status: dict, active: list[dict],
                 now: float) -> tuple[str, str] | None:
        target = _condition(job, "FailureTarget")
        if target:
            return target.get("reason", ""), target.get("message", "")
        spec = job.get("spec") or {}
        limit = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else 6)
        policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy")
        if policy == "OnFailure":
            restarts = sum(_restarts(p) for p in active)
            if (limit == 0 and restarts > 0) or (limit > 0 and restarts >= limit):
                return BACKOFF_LIMIT_EXCEEDED
        if status["failed"] > limit:
            return BACKOFF_LIMIT_EXCEEDED
        deadline = spec.get("activeDeadlineSeconds")
        started = parse_time(status.get("startTime"))
        if deadline is not None and started is not None and now - started >= int(deadline):
            return DEADLINE_EXCEEDED
        return None

    def _backoff_remaining(self, job: dict, pods: list[dict], failed: int, now: float) -> float:
        if failed <= 0:
            return 0.0
        delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (failed - 1))
        failed_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        if not failed_pods:
            return 0.0
        last = max(_finished_at(p) for p in failed_pods)
        return max(0.0, last + delay - now)

    def _set(self, conditions: list[dict], kind: str, reason: str, message: str) -> list[dict]:
        if any(c.get("type") == kind and c.get("status") == "True" for c in conditions):
            return conditions
        now = now_rfc3339()
        return [c for c in conditions if c.get("type") != kind] + [{
            "type": kind, "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message,
        }]

    async def _create_pod(self, job: dict) -> None:
        namespace, name = key_of(job)
        uid = meta(job)["uid"]
        template = (job.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels.update({"batch.kubernetes.io/controller-uid": uid,
                       "batch.kubernetes.io/job-name": name,
                       "controller-uid": uid, "job-name": name})
        body = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "generateName": f"{name}-", "namespace": namespace, "labels": labels,
                "ownerReferences": [owner_reference(job, "Job", "batch/v1")],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        if tmeta.get("annotations"):
            body["metadata"]["annotations"] = dict(tmeta["annotations"])
        try:
            pod = await self.client.create(PODS.path(namespace), body)
        except ApiError as exc:
            self.events.record(job, "Job", "FailedCreate", f"Error creating: {exc}", "Warning",
                               component="job-controller")
            raise
        self.pods.remember(pod)
        self.events.record(job, "Job", "SuccessfulCreate",
                           f"Created pod: {meta(pod).get('name')}", component="job-controller")

    async def _delete_pods(self, job: dict, pods: list[dict]) -> None:
        for pod in pods:
            namespace, name = key_of(pod)
            answer = await self.client.delete(PODS.path(namespace, name),
                                              uid=meta(pod).get("uid"))
            if answer and answer.get("kind") == "Pod":
                self.pods.remember(answer)
            else:
                self.pods.forget(namespace, name)
            self.events.record(job, "Job", "SuccessfulDelete", f"Deleted pod: {name}",
                               component="job-controller")

    async def _write_status(self, job: dict, status: dict, pods: list[dict]) -> None:
        active = [p for p in pods if pod_is_active(p)]
        full = {
            "startTime": status.get("startTime"),
            "active": len(active),
            "ready": sum(1 for p in active if pod_is_ready(p)),
            "terminating": sum(1 for p in pods if is_terminating(p) and
                               (p.get("status") or {}).get("phase") not in ("Succeeded",
                                                                            "Failed")),
            "succeeded": status.get("succeeded", 0),
            "failed": status.get("failed", 0),
            "conditions": status.get("conditions") or None,
            "completionTime": status.get("completionTime")
            or (job.get("status") or {}).get("completionTime"),
            "uncountedTerminatedPods": {},
        }
        # Kubernetes omits zero counts (except ready and terminating) and empty fields.
        full = {k: v for k, v in full.items()
                if v not in (None, 0) or k in ("ready", "terminating")}
        old = job.get("status") or {}
        patch = {k: v for k, v in full.items() if old.get(k) != v}
        patch.update({k: None for k in old if k not in full})
        if not patch:
            return
        namespace, name = key_of(job)
        updated = await self.client.merge_patch(JOBS.path(namespace, name, "status"),
                                                {"status": patch})
        self.jobs.remember(updated)

    async def _after_finish(self, job: dict) -> None:
        """A finished Job: no pod keeps running, and the TTL, if any, deletes the Job."""
        active = [p for p in self._current(job) if pod_is_active(p)]
        if active:
            await self._delete_pods(job, active)
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        ended = parse_time((job.get("status") or {}).get("completionTime"))
        if ended is None:
            failed = _condition(job, "Failed") or {}
            ended = parse_time(failed.get("lastTransitionTime")) or time.time()
        remaining = ended + int(ttl) - time.time()
        if remaining > 0:
            self.queue.add_after(key_of(job), remaining)
            return
        namespace, name = key_of(job)
        await self.client.delete(JOBS.path(namespace, name), propagation="Background",
                                 uid=meta(job).get("uid"))
        self.jobs.forget(namespace, name)
