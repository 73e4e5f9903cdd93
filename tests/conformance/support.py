"""Helpers shared by the conformance tests: the target, polling, raw requests, a test CRD.

Kept apart from ``conftest.py`` so test modules import them explicitly.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from runbook_lib.sandbox.kubeapi import KubeAPIServer, ServerThread


@dataclass
class Target:
    """The cluster under test."""

    kubeconfig: str
    api: client.ApiClient
    thread: ServerThread | None  # None on a real cluster

    @property
    def local(self) -> bool:
        return self.thread is not None

    @property
    def server(self) -> KubeAPIServer:
        if self.thread is None:
            pytest.skip("needs a sandbox hook; not available on a real cluster")
        return self.thread.server

    def on_server(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the sandbox server's event loop (hooks, knobs)."""
        if self.thread is None:
            pytest.skip("needs a sandbox hook; not available on a real cluster")
        return self.thread.call(function)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value: {last!r}")


def status_of(error: client.ApiException) -> dict[str, Any]:
    """The Status body of an API error."""
    return json.loads(error.body)


def raw_request(target: Target, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json",
                accept: str = "application/json") -> tuple[int, dict[str, str], bytes]:
    """A request with the client's credentials and TLS settings but a body of our choosing."""
    api = target.api
    headers = {"Accept": accept}
    if body is not None:
        headers["Content-Type"] = content_type
    _, url, headers, _, _ = api.param_serialize(method, path, header_params=headers,
                                                auth_settings=["BearerToken"])
    response = api.rest_client.pool_manager.request(method, url, body=body, headers=headers,
                                                    preload_content=True, timeout=10)
    return response.status, dict(response.headers), response.data


def crd_manifest(group: str, plural: str = "widgets", kind: str = "Widget",
                 scope: str = "Namespaced", status: bool = True) -> dict[str, Any]:
    """A small CRD: spec.size (integer), spec.color (string, default "blue"), status."""
    version: dict[str, Any] = {
        "name": "v1", "served": True, "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer"},
                "color": {"type": "string", "default": "blue"},
                "items": {"type": "array", "items": {"type": "string"}},
            }},
            "status": {"type": "object", "properties": {
                "phase": {"type": "string"},
                "conditions": {"type": "array", "items": {
                    "type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }},
        }}},
        "additionalPrinterColumns": [
            {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        ],
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                      "shortNames": [f"{kind.lower()[:2]}x{group.split('.')[0][-4:]}"],
                      "categories": ["conformance"]},
            "versions": [version],
        },
    }


@dataclass
class Crd:
    group: str
    plural: str
    kind: str
    name: str


def wait_established(extensions: client.ApiextensionsV1Api, name: str) -> None:
    def established() -> bool:
        crd = extensions.read_custom_resource_definition(name)
        conditions = (crd.status.conditions or []) if crd.status else []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    eventually(established, timeout=20)


def wait_served(target: Target, group_version_path: str, plural: str) -> None:
    def served() -> bool:
        status, _, data = raw_request(target, "GET", group_version_path)
        return status == 200 and any(r["name"] == plural
                                     for r in json.loads(data).get("resources", []))

    eventually(served, timeout=20)


def plain(obj: Any) -> dict[str, Any]:
    """A client model or dict as the plain JSON dict the server sent."""
    if isinstance(obj, dict):
        return obj
    return client.ApiClient().sanitize_for_serialization(obj)
