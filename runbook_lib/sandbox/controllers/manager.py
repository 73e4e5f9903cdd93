"""The sandbox's controller manager: every controller and the kubelet, in the daemon's loop.

The sandbox daemon builds one :class:`ControllerManager` from its SandboxContext, installs its
hooks on the API server (pod logs and the service proxy), then ``await start()`` and, at the end,
``await stop()``. The controllers are HTTP clients of the API server, like real ones: shared
informers (list + watch) feed work queues, and each controller reconciles from current state on
every change and again on a periodic resync, so a missed event only delays it.

``stop()`` stops every pod process (SIGTERM, at most 5 s, SIGKILL) without writing to the API,
so it also works when the API server is already gone; pod processes die with the daemon anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from runbook_lib.sandbox.controllers.client import (
    DEPLOYMENTS,
    ENDPOINTS,
    JOBS,
    PODS,
    REPLICASETS,
    SERVICES,
    ApiClient,
    ApiError,
    bearer_token,
)
from runbook_lib.sandbox.controllers.deployment import DeploymentController, ReplicaSetController
from runbook_lib.sandbox.controllers.endpoints import EndpointsController
from runbook_lib.sandbox.controllers.events import EventRecorder
from runbook_lib.sandbox.controllers.informer import Informer
from runbook_lib.sandbox.controllers.job import JobController
from runbook_lib.sandbox.controllers.kubelet import NODE_NAME, Kubelet
from runbook_lib.sandbox.controllers.process import kill_all_groups

log = logging.getLogger("runbook_lib.sandbox.controllers.manager")

HEARTBEAT_EVERY = 4  # resync periods between node heartbeats


class ControllerManager:
    """Deployment, ReplicaSet, Job and Endpoints controllers, the scheduler and the kubelet."""

    def __init__(self, ctx: Any, *, node_name: str = NODE_NAME, resync_s: float = 5.0,
                 stop_grace_s: float = 5.0):
        self.ctx = ctx
        self.node_name = node_name
        self.resync_s = resync_s
        self.stop_grace_s = stop_grace_s
        self.client: ApiClient | None = None
        self.kubelet: Kubelet | None = None
        self.endpoints: EndpointsController | None = None
        self._tasks: list[asyncio.Task] = []
        self._queues: list = []
        self._resyncers: list = []
        ctx.network.add_resolver(self._resolve_host)

    # -- hooks (callable before start; they answer None until the caches are filled) -----------

    def install_hooks(self, api_server: Any) -> None:
        """Serve pod logs and the service proxy of ``api_server`` from this manager."""
        api_server.pod_log_provider = self.read_log
        api_server.pod_log_follower = self.follow_log
        api_server.service_resolver = self.service_url

    def read_log(self, namespace: str, pod: str, container: str | None = None,
                 previous: bool = False) -> str | None:
        if self.kubelet is None:
            return None
        return self.kubelet.read_log(namespace, pod, container, previous)

    async def follow_log(self, namespace: str, pod: str,
                         container: str | None = None) -> AsyncIterator[bytes]:
        if self.kubelet is None:
            return
        async for chunk in self.kubelet.follow_log(namespace, pod, container):
            yield chunk

    def service_url(self, namespace: str, service: str,
                    port: int | str | None = None) -> str | None:
        if self.endpoints is None:
            return None
        return self.endpoints.service_url(namespace, service, port)

    def _resolve_host(self, host: str, port: int | None) -> tuple[str, int] | None:
        if self.endpoints is None:
            return None
        return self.endpoints.resolve_host(host, port)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, sync_timeout_s: float = 15.0) -> None:
        """Fill the caches, register the node, then start every controller."""
        self.client = ApiClient(self.ctx.api_url, bearer_token(self.ctx.kubeconfig))
        informers = {r.plural: Informer(self.client, r)
                     for r in (PODS, REPLICASETS, DEPLOYMENTS, JOBS, SERVICES, ENDPOINTS)}
        pods = informers["pods"]
        events = EventRecorder(self.client, self.node_name)
        kubelet = Kubelet(self.ctx, self.client, pods, events, self.node_name)
        replicasets = ReplicaSetController(self.client, informers["replicasets"], pods, events)
        deployments = DeploymentController(self.client, informers["deployments"],
                                           informers["replicasets"], events)
        jobs = JobController(self.client, informers["jobs"], pods, events)
        endpoints = EndpointsController(self.client, informers["services"],
                                        informers["endpoints"], pods)
        controllers = [kubelet, replicasets, deployments, jobs, endpoints]

        # Caches first: a controller acting on a half-filled cache would create duplicates.
        self._tasks = [asyncio.create_task(i.run(), name=f"informer {name}")
                       for name, i in informers.items()]
        self._tasks.append(asyncio.create_task(events.run(), name="events"))
        try:
            await asyncio.wait_for(
                asyncio.gather(*(i.synced.wait() for i in informers.values())), sync_timeout_s)
        except TimeoutError:
            await self.stop()
            raise ApiError(504, "Timeout",
                           f"could not list resources from {self.ctx.api_url}") from None
        await kubelet.start()

        self.kubelet, self.endpoints = kubelet, endpoints
        self._queues = [c.queue for c in controllers]
        self._resyncers = controllers
        self._tasks += [asyncio.create_task(q.run(), name=f"controller {q.name}")
                        for q in self._queues]
        self._tasks.append(asyncio.create_task(self._resync_loop(), name="resync"))
        log.info("sandbox controllers started against %s (node %s)", self.ctx.api_url,
                 self.node_name)

    async def _resync_loop(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(self.resync_s)
            tick += 1
            for controller in self._resyncers:
                controller.resync()
            if tick % HEARTBEAT_EVERY == 0 and self.kubelet is not None:
                try:
                    await self.kubelet.heartbeat()
                except (TimeoutError, ApiError, OSError) as exc:
                    log.debug("node heartbeat failed: %s", exc)

    async def stop(self) -> None:
        """Stop the controllers, then every pod process; leaves no child process behind."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        try:
            if self.kubelet is not None:
                await self.kubelet.shutdown(self.stop_grace_s)
        finally:
            kill_all_groups()
            if self.client is not None:
                await self.client.close()
                self.client = None
            self.kubelet = None
            self.endpoints = None
        log.info("sandbox controllers stopped")
