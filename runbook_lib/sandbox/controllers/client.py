"""A small asynchronous Kubernetes API client for the sandbox controllers.

The controllers talk to the sandbox API server over HTTP exactly as real controllers talk to a
real one: list, watch, create, merge-patch (also on ``/status``), delete. This module is that
client, on aiohttp, sharing the daemon's event loop. It knows the few resources the controllers
use and turns API failures into :class:`ApiError` carrying the server's status and message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

log = logging.getLogger("runbook_lib.sandbox.controllers.client")


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API: group/version prefix and plural name."""

    kind: str
    prefix: str  # "/api/v1" or "/apis/apps/v1"
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return "v1" if self.prefix == "/api/v1" else self.prefix[len("/apis/"):]

    def path(self, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
        parts = [self.prefix]
        if self.namespaced and namespace:
            parts += ["namespaces", namespace]
        parts.append(self.plural)
        if name:
            parts.append(name)
        if sub:
            parts.append(sub)
        return "/".join(parts)


PODS = Resource("Pod", "/api/v1", "pods")
SERVICES = Resource("Service", "/api/v1", "services")
ENDPOINTS = Resource("Endpoints", "/api/v1", "endpoints")
SECRETS = Resource("Secret", "/api/v1", "secrets")
CONFIGMAPS = Resource("ConfigMap", "/api/v1", "configmaps")
EVENTS = Resource("Event", "/api/v1", "events")
NODES = Resource("Node", "/api/v1", "nodes", namespaced=False)
DEPLOYMENTS = Resource("Deployment", "/apis/apps/v1", "deployments")
REPLICASETS = Resource("ReplicaSet", "/apis/apps/v1", "replicasets")
JOBS = Resource("Job", "/apis/batch/v1", "jobs")


class ApiError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str):
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}: {message}")


def bearer_token(kubeconfig: Path | None) -> str | None:
    """The current user's token from a kubeconfig, when it has one (the sandbox may not)."""
    if not kubeconfig or not Path(kubeconfig).exists():
        return None
    import yaml

    try:
        config = yaml.safe_load(Path(kubeconfig).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    current = config.get("current-context")
    context = next((c.get("context") or {} for c in config.get("contexts") or []
                    if c.get("name") == current), {})
    user = next((u.get("user") or {} for u in config.get("users") or []
                 if u.get("name") == context.get("user")), {})
    return user.get("token")


class ApiClient:
    """JSON over HTTP to one API server. Create inside the running loop; ``close()`` at the end."""

    def __init__(self, base_url: str, token: str | None = None):
        self.base_url = base_url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "sandbox-controllers"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            connector=aiohttp.TCPConnector(limit=64),
        )

    async def close(self) -> None:
        await self._session.close()

    async def request(self, method: str, path: str, body: Any = None,
                      params: dict | None = None, content_type: str = "application/json",
                      timeout_s: float = 30.0) -> dict:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        async with self._session.request(
            method, self.base_url + path, data=data, params=params, headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise _error(resp.status, text)
            return json.loads(text) if text else {}

    async def get(self, path: str) -> dict | None:
        """The object at ``path``, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, path: str, label_selector: str | None = None) -> dict:
        params = {"labelSelector": label_selector} if label_selector else None
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: dict) -> dict:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, body: dict) -> dict:
        return await self.request("PATCH", path, body, content_type="application/merge-patch+json")

    async def delete(self, path: str, grace_period_s: int | None = None,
                     propagation: str | None = None, uid: str | None = None) -> dict | None:
        """Delete; None when it was already gone. The answer is the object or a Status."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_s is not None:
            body["gracePeriodSeconds"] = grace_period_s
        if propagation:
            body["propagationPolicy"] = propagation
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            return await self.request("DELETE", path, body)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def watch(self, path: str, resource_version: str,
                    timeout_s: int = 240) -> AsyncIterator[dict]:
        """Yield watch events (dicts with ``type`` and ``object``) until the server ends it."""
        params = {
            "watch": "true", "resourceVersion": resource_version,
            "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_s),
        }
        async with self._session.get(
            self.base_url + path, params=params,
            timeout=aiohttp.ClientTimeout(total=timeout_s + 30, sock_connect=5),
        ) as resp:
            if resp.status >= 400:
                raise _error(resp.status, await resp.text())
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
            if buffer.strip():
                yield json.loads(buffer)


def _error(status: int, text: str) -> ApiError:
    try:
        body = json.loads(text)
        return ApiError(status, body.get("reason", ""), body.get("message", text[:200]))
    except (ValueError, AttributeError):
        return ApiError(status, "", text[:200])
