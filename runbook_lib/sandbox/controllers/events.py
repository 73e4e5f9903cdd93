"""Core v1 Events for what the sandbox controllers do (``kubectl describe`` and ``get events``).

Controllers call :meth:`EventRecorder.record` and move on: events are written in the background,
a repeat of the same reason and message on the same object bumps the existing event's count as
the real recorder does, and a failure to write one is only logged at debug level. Messages never
carry secret values; callers pass names only.
"""

from __future__ import annotations

import asyncio
import logging
import time

from runbook_lib.sandbox.controllers.client import EVENTS, ApiClient, ApiError
from runbook_lib.sandbox.controllers.util import meta, now_rfc3339

log = logging.getLogger("runbook_lib.sandbox.controllers.events")


class EventRecorder:
    def __init__(self, client: ApiClient, host: str):
        self.client = client
        self.host = host
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=2000)
        self._seen: dict[tuple, tuple[str, int]] = {}

    def record(self, obj: dict, kind: str, reason: str, message: str, event_type: str = "Normal",
               component: str = "kubelet", field_path: str | None = None) -> None:
        """Queue an event about ``obj`` (a dict of kind ``kind``); never blocks, never raises."""
        m = meta(obj)
        involved = {
            "kind": kind, "namespace": m.get("namespace", "default"), "name": m.get("name"),
            "uid": m.get("uid"), "apiVersion": obj.get("apiVersion", "v1"),
            "resourceVersion": m.get("resourceVersion"),
        }
        if field_path:
            involved["fieldPath"] = field_path
        try:
            self._queue.put_nowait((involved, reason, message, event_type, component))
        except asyncio.QueueFull:
            pass

    async def run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._write(*item)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, ApiError, OSError) as exc:
                log.debug("could not write event %s: %s", item[1], exc)

    async def _write(self, involved: dict, reason: str, message: str, event_type: str,
                     component: str) -> None:
        namespace = involved["namespace"]
        now = now_rfc3339()
        key = (involved.get("uid"), reason, message, event_type)
        previous = self._seen.get(key)
        if previous is not None:
            name, count = previous
            try:
                await self.client.merge_patch(
                    EVENTS.path(namespace, name), {"count": count + 1, "lastTimestamp": now})
                self._seen[key] = (name, count + 1)
                return
            except ApiError as exc:
                if exc.status != 404:
                    raise
        name = f"{involved['name']}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved, "reason": reason, "message": message, "type": event_type,
            "source": {"component": component, "host": self.host},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": component, "reportingInstance": self.host,
        }
        await self.client.create(EVENTS.path(namespace), body)
        if len(self._seen) > 5000:
            self._seen.clear()
        self._seen[key] = (name, 1)
