"""List-and-watch caches and work queues: the plumbing under every sandbox controller.

An :class:`Informer` keeps an in-memory copy of one resource across all namespaces by listing it
and then watching from the list's resourceVersion; when the watch breaks or expires it lists
again, so a missed event costs a re-list, never a wrong state. Each change calls the handlers
that controllers registered; handlers only put keys on a :class:`WorkQueue`, and each controller
reconciles one key at a time from its current cached state (level-triggered).

Controllers write through the cache (``Informer.remember``) after their own writes so that the
next reconcile does not act twice on a stale view, for instance create pods a second time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable

from runbook_lib.sandbox.controllers.client import ApiClient, ApiError, Resource
from runbook_lib.sandbox.controllers.util import key_of

log = logging.getLogger("runbook_lib.sandbox.controllers.informer")

Handler = Callable[[str, dict, dict | None], None]


def _rv(obj: dict) -> int | None:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion", ""))
    except ValueError:
        return None


class Informer:
    """A cache of one resource kind, kept current by list + watch."""

    def __init__(self, client: ApiClient, resource: Resource):
        self.client = client
        self.resource = resource
        self.store: dict[tuple[str, str], dict] = {}
        self.synced = asyncio.Event()
        self._handlers: list[Handler] = []

    def add_handler(self, handler: Handler) -> None:
        """``handler(event_type, obj, old)``; event types ADDED, MODIFIED, DELETED."""
        self._handlers.append(handler)

    def get(self, namespace: str, name: str) -> dict | None:
        return self.store.get((namespace, name))

    # Reads copy the store first: the Network calls resolvers from other threads (moto's), and
    # copying a dict is a single step under the GIL while iterating over it is not.
    def in_namespace(self, namespace: str) -> list[dict]:
        return [o for (ns, _), o in list(self.store.items()) if ns == namespace]

    def all(self) -> list[dict]:
        return list(self.store.values())

    def remember(self, obj: dict | None) -> None:
        """Write-through after our own write: keep the newer of cached and returned object."""
        if not obj or obj.get("kind") == "Status" or "metadata" not in obj:
            return
        key = key_of(obj)
        old = self.store.get(key)
        if old is not None:
            new_rv, old_rv = _rv(obj), _rv(old)
            if new_rv is not None and old_rv is not None and new_rv < old_rv:
                return
        self.store[key] = obj
        self._notify("MODIFIED" if old else "ADDED", obj, old)

    def forget(self, namespace: str, name: str) -> None:
        old = self.store.pop((namespace, name), None)
        if old is not None:
            self._notify("DELETED", old, old)

    async def run(self) -> None:
        """List, then watch; on any break list again after a short pause. Runs until cancelled."""
        path = self.resource.path()
        while True:
            try:
                version = await self._relist(path)
                self.synced.set()
                await self._watch(path, version)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, ApiError, OSError, ValueError) as exc:
                log.debug("watch on %s broke (%s); listing again", self.resource.plural, exc)
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("informer for %s failed; listing again", self.resource.plural)
                await asyncio.sleep(1.0)

    async def _relist(self, path: str) -> str:
        listing = await self.client.list(path)
        items = listing.get("items") or []
        fresh = {key_of(o): o for o in items}
        for key in list(self.store):
            if key not in fresh:
                self.forget(*key)
        for key, obj in fresh.items():
            old = self.store.get(key)
            self.store[key] = obj
            self._notify("MODIFIED" if old else "ADDED", obj, old)
        return (listing.get("metadata") or {}).get("resourceVersion", "0")

    async def _watch(self, path: str, version: str) -> None:
        async for event in self.client.watch(path, version):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                # Usually 410 Gone: our version is too old. The caller lists again.
                raise ApiError(obj.get("code", 500), obj.get("reason", ""), obj.get("message", ""))
            if kind == "BOOKMARK":
                continue
            key = key_of(obj)
            old = self.store.get(key)
            if kind == "DELETED":
                self.store.pop(key, None)
            else:
                self.store[key] = obj
            self._notify(kind, obj, old)

    def _notify(self, kind: str, obj: dict, old: dict | None) -> None:
        for handler in self._handlers:
            try:
                handler(kind, obj, old)
            except Exception:
                log.exception("handler for %s failed", self.resource.plural)


class WorkQueue:
    """Keys to reconcile, each at most once in the queue, processed by one worker in order."""

    def __init__(self, name: str, reconcile: Callable[[Hashable], Awaitable[None]]):
        self.name = name
        self._reconcile = reconcile
        self._queue: asyncio.Queue = asyncio.Queue()
        self._pending: set = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}

    def add(self, key: Hashable) -> None:
        if key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay_s: float) -> None:
        """Queue ``key`` after ``delay_s``; an earlier pending timer for the key wins."""
        loop = asyncio.get_running_loop()
        timer = self._timers.get(key)
        when = loop.time() + delay_s
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def run(self) -> None:
        try:
            while True:
                key = await self._queue.get()
                self._pending.discard(key)
                try:
                    await self._reconcile(key)
                except asyncio.CancelledError:
                    raise
                except ApiError as exc:
                    # Conflicts and races resolve on the next pass over fresh state.
                    log.debug("%s: reconcile %s: %s; retrying", self.name, key, exc)
                    self.add_after(key, 0.5)
                except (TimeoutError, OSError) as exc:
                    log.debug("%s: reconcile %s: %s; retrying", self.name, key, exc)
                    self.add_after(key, 1.0)
                except Exception:
                    log.exception("%s: reconcile %s failed; retrying", self.name, key)
                    self.add_after(key, 2.0)
        finally:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
