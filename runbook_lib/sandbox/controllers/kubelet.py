"""The sandbox node: scheduler, kubelet and container logs in one place.

There is one node, ``sandbox-node-1``, kept as a Ready Node object. Every pod without a node is
bound to it (through the ``binding`` subresource, as the scheduler does) and gets a
:class:`~runbook_lib.sandbox.controllers.pod_worker.PodWorker` that runs its containers as local
processes. When the API server marks a pod for deletion, the kubelet stops its processes within
the pod's grace period and then deletes the pod with ``gracePeriodSeconds=0``; a pod removed
outright (forced) has its processes stopped within 2 s.

Container logs live under ``<state_dir>/pods/<namespace>_<pod>_<uid>/logs/<container>/<n>.log``,
one file per run; :meth:`Kubelet.read_log` and :meth:`Kubelet.follow_log` serve them to the API
server's log endpoint (``previous`` is the run before the latest).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from runbook_lib.sandbox.controllers.client import (
    CONFIGMAPS,
    NODES,
    PODS,
    SECRETS,
    ApiClient,
    ApiError,
)
from runbook_lib.sandbox.controllers.events import EventRecorder
from runbook_lib.sandbox.controllers.informer import Informer, WorkQueue
from runbook_lib.sandbox.controllers.pod_worker import DEFAULT_GRACE_S, PodWorker
from runbook_lib.sandbox.controllers.process import kill_all_groups
from runbook_lib.sandbox.controllers.util import is_terminating, key_of, meta, now_rfc3339

log = logging.getLogger("runbook_lib.sandbox.controllers.kubelet")

NODE_NAME = "sandbox-node-1"
FORCED_GRACE_S = 2.0


class Kubelet:
    def __init__(self, ctx: Any, client: ApiClient, pods: Informer, events: EventRecorder,
                 node_name: str = NODE_NAME):
        self.ctx = ctx
        self.client = client
        self.pods = pods
        self.events = events
        self.node_name = node_name
        self.workers: dict[str, PodWorker] = {}
        self.probe_session: aiohttp.ClientSession | None = None
        self.queue = WorkQueue("kubelet", self.reconcile)
        self._tasks: set[asyncio.Task] = set()
        self._deleting: set[str] = set()
        self._binding_works = True
        self._read_upto: dict[tuple[str, str, str], tuple[Path, int]] = {}
        pods.add_handler(lambda _t, pod, _o: self.queue.add(key_of(pod)))

    async def start(self) -> None:
        self.probe_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0))
        (Path(self.ctx.state_dir) / "pods").mkdir(parents=True, exist_ok=True)
        os.chmod(Path(self.ctx.state_dir) / "pods", 0o700)
        await self.heartbeat()

    def resync(self) -> None:
        for pod in self.pods.all():
            self.queue.add(key_of(pod))

    def pod_dir(self, namespace: str, name: str, uid: str) -> Path:
        return Path(self.ctx.state_dir) / "pods" / f"{namespace}_{name}_{uid}"

    async def get_secret(self, namespace: str, name: str) -> dict | None:
        return await self.client.get(SECRETS.path(namespace, name))

    async def get_configmap(self, namespace: str, name: str) -> dict | None:
        return await self.client.get(CONFIGMAPS.path(namespace, name))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- pods -----------------------------------------------------------------------------------

    async def reconcile(self, key: tuple[str, str]) -> None:
        namespace, name = key
        pod = self.pods.get(namespace, name)
        uid = meta(pod).get("uid") if pod else None

        # A worker whose pod vanished (forced deletion, or replaced under the same name).
        for worker_uid, worker in list(self.workers.items()):
            if (worker.namespace, worker.name) == key and worker_uid != uid \
                    and worker.termination is None:
                worker.termination = self._spawn(self._discard(worker))
        if pod is None:
            return

        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            if not is_terminating(pod):
                await self._bind(pod)
            return
        if node != self.node_name:
            return

        worker = self.workers.get(uid)
        if is_terminating(pod):
            if worker is None and uid not in self._deleting:
                self._deleting.add(uid)
                self._spawn(self._finish_deletion(pod, None))
            elif worker is not None and worker.termination is None:
                worker.termination = self._spawn(self._finish_deletion(pod, worker))
            return
        phase = (pod.get("status") or {}).get("phase")
        if worker is None and phase not in ("Succeeded", "Failed"):
            worker = PodWorker(self, pod)
            self.workers[uid] = worker
            worker.start()
        elif worker is not None:
            worker.pod = {**pod, "spec": worker.pod.get("spec")}

    async def _bind(self, pod: dict) -> None:
        namespace, name = key_of(pod)
        if self._binding_works:
            body = {"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "namespace": namespace},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name}}
            try:
                await self.client.create(PODS.path(namespace, name, "binding"), body)
            except ApiError as exc:
                if exc.status not in (404, 405):
                    raise
                self._binding_works = False
        if not self._binding_works:
            updated = await self.client.merge_patch(PODS.path(namespace, name),
                                                    {"spec": {"nodeName": self.node_name}})
            self.pods.remember(updated)
        self.events.record(pod, "Pod", "Scheduled",
                           f"Successfully assigned {namespace}/{name} to {self.node_name}",
                           component="default-scheduler")

    async def _finish_deletion(self, pod: dict, worker: PodWorker | None) -> None:
        """Graceful deletion: stop the processes within the grace period, then remove the pod."""
        namespace, name = key_of(pod)
        uid = meta(pod).get("uid")
        grace = meta(pod).get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
        try:
            if worker is not None:
                await worker.terminate(float(grace))
            await self.client.delete(PODS.path(namespace, name), grace_period_s=0, uid=uid)
        except (TimeoutError, ApiError, OSError) as exc:
            log.debug("final deletion of pod %s/%s: %s", namespace, name, exc)
            if worker is not None:
                worker.termination = None
            self._deleting.discard(uid)
            self.queue.add_after((namespace, name), 1.0)
            return
        self.workers.pop(uid, None)
        self._deleting.discard(uid)

    async def _discard(self, worker: PodWorker) -> None:
        await worker.terminate(min(FORCED_GRACE_S, worker._grace_s()), write_status=False)
        self.workers.pop(worker.uid, None)

    async def shutdown(self, grace_s: float) -> None:
        """Stop every pod's processes (SIGTERM, at most ``grace_s``, SIGKILL); no API writes."""
        workers = list(self.workers.values())
        await asyncio.gather(*(w.terminate(min(grace_s, w._grace_s()), write_status=False)
                               for w in workers), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        kill_all_groups()
        self.workers.clear()
        if self.probe_session is not None:
            await self.probe_session.close()

    # -- node -----------------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Create the Node when missing and report it Ready."""
        path = NODES.path(name=self.node_name)
        if await self.client.get(path) is None:
            labels = {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                      "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "sandbox"}
            try:
                await self.client.create(NODES.path(), {
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": self.node_name, "labels": labels}, "spec": {}})
            except ApiError as exc:
                if exc.status != 409:
                    raise
        now = now_rfc3339()

        def condition(kind: str, status: str, reason: str, message: str) -> dict:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": self._started_at}

        cpus = str(os.cpu_count() or 1)
        memory = f"{_memory_kib()}Ki"
        capacity = {"cpu": cpus, "memory": memory, "pods": "110", "ephemeral-storage": "50Gi"}
        status = {
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                          "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                          "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID",
                          "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": self.node_name}],
            "capacity": capacity, "allocatable": capacity,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "kubeletVersion": "v1.31.0", "kubeProxyVersion": "v1.31.0",
                "operatingSystem": "linux", "architecture": "amd64",
                "containerRuntimeVersion": "sandbox://1.0", "osImage": "runbook sandbox",
                "kernelVersion": os.uname().release, "machineID": "", "systemUUID": "",
                "bootID": "",
            },
        }
        await self.client.merge_patch(NODES.path(name=self.node_name, sub="status"),
                                      {"status": status})

    @property
    def _started_at(self) -> str:
        if not hasattr(self, "_started"):
            self._started = now_rfc3339()
        return self._started

    # -- logs -----------------------------------------------------------------------------------

    def _log_files(self, namespace: str, name: str,
                   container: str | None) -> tuple[list[Path], str] | None:
        pod = self.pods.get(namespace, name)
        if pod is None:
            return None
        spec = pod.get("spec") or {}
        names = [c.get("name") for c in (spec.get("initContainers") or [])
                 + (spec.get("containers") or [])]
        if not container:
            default = (meta(pod).get("annotations") or {}).get(
                "kubectl.kubernetes.io/default-container")
            mains = [c.get("name") for c in spec.get("containers") or []]
            container = default if default in names else (mains[0] if mains else None)
        if container not in names:
            return None
        folder = self.pod_dir(namespace, name, meta(pod).get("uid", "")) / "logs" / container
        files = sorted(folder.glob("*.log"), key=lambda p: int(p.stem) if p.stem.isdigit()
                       else -1) if folder.is_dir() else []
        return files, container

    def read_log(self, namespace: str, name: str, container: str | None = None,
                 previous: bool = False) -> str | None:
        """A container's log (the latest run, or the one before with ``previous``).

        None when the pod or container does not exist, has not started yet, or has no previous
        run. Remembers how far the latest run was read, for :meth:`follow_log`.
        """
        found = self._log_files(namespace, name, container)
        if found is None:
            return None
        files, container = found
        if previous:
            return files[-2].read_text(errors="replace") if len(files) >= 2 else None
        if not files:
            return None
        data = files[-1].read_bytes()
        self._read_upto[(namespace, name, container)] = (files[-1], len(data))
        return data.decode(errors="replace")

    async def follow_log(self, namespace: str, name: str,
                         container: str | None = None) -> AsyncIterator[bytes]:
        """What the latest run writes after the last :meth:`read_log`, until that run ends."""
        found = self._log_files(namespace, name, container)
        if found is None:
            return
        files, container = found
        while not files:
            if not self._may_start(namespace, name, container):
                return
            await asyncio.sleep(0.2)
            found = self._log_files(namespace, name, container)
            if found is None:
                return
            files = found[0]
        path = files[-1]
        index = int(path.stem) if path.stem.isdigit() else -1
        read_path, offset = self._read_upto.pop((namespace, name, container), (None, 0))
        with path.open("rb") as handle:
            handle.seek(offset if read_path == path else 0)
            while True:
                chunk = handle.read(65536)
                if chunk:
                    yield chunk
                    continue
                if not self._is_writing(namespace, name, container, index):
                    rest = handle.read()
                    if rest:
                        yield rest
                    return
                await asyncio.sleep(0.2)

    def _worker(self, namespace: str, name: str) -> PodWorker | None:
        pod = self.pods.get(namespace, name)
        return self.workers.get(meta(pod).get("uid")) if pod else None

    def _is_writing(self, namespace: str, name: str, container: str, index: int) -> bool:
        worker = self._worker(namespace, name)
        c = worker.container(container) if worker else None
        return c is not None and c.run_index == index and c.running

    def _may_start(self, namespace: str, name: str, container: str) -> bool:
        worker = self._worker(namespace, name)
        return worker is not None and not worker.done.is_set()


def _memory_kib() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 8 * 1024 * 1024
