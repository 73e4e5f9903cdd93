"""Services in the sandbox: the Endpoints controller and the two ways a Service is reached.

For every Service with a selector, an Endpoints object of the same name lists the pods behind
it (ready ones under ``addresses``, others under ``notReadyAddresses``; every pod's IP is
127.0.0.1 and its ``targetRef`` names the pod), with each service port's ``targetPort`` resolved
to the pod's container port, by number or by container port name.

A Service is reached through the local port of one of its ready pods (round-robin), read from
the pod's ``sandbox.runbook.dbos.dev/ports`` annotation:

- :meth:`EndpointsController.service_url` is the API server's ``service_resolver`` hook (the
  service proxy, ``…/services/NAME:PORT/proxy/…``);
- :meth:`EndpointsController.resolve_host` is registered on the sandbox Network, so that
  ``<svc>.<ns>.svc.cluster.local``, ``<svc>.<ns>.svc`` and ``<svc>.<ns>`` with a service port
  become ``127.0.0.1`` and that pod's local port. A name rewritten into a pod's environment
  at its start stays bound to the pod chosen then (there is no virtual IP in front).
"""

from __future__ import annotations

import logging

from runbook_lib.sandbox.controllers.client import ENDPOINTS, ApiClient
from runbook_lib.sandbox.controllers.informer import Informer, WorkQueue
from runbook_lib.sandbox.controllers.util import (
    container_port_by_name,
    is_terminating,
    key_of,
    map_selector_matches,
    meta,
    now_rfc3339,
    pod_is_ready,
    port_mapping,
)

log = logging.getLogger("runbook_lib.sandbox.controllers.endpoints")

_SUFFIXES = (".svc.cluster.local", ".svc", "")


def target_port(service_port: dict, pod: dict) -> int | None:
    """The container port of ``pod`` that a service port sends traffic to."""
    target = service_port.get("targetPort")
    if target is None:
        target = service_port.get("port")
    if isinstance(target, int):
        return target
    text = str(target)
    if text.isdigit():
        return int(text)
    return container_port_by_name(pod, text)


class EndpointsController:
    def __init__(self, client: ApiClient, services: Informer, endpoints: Informer,
                 pods: Informer):
        self.client = client
        self.services = services
        self.endpoints = endpoints
        self.pods = pods
        self.queue = WorkQueue("endpoints", self.reconcile)
        self._next: dict[tuple[str, str], int] = {}
        services.add_handler(lambda _t, svc, _o: self.queue.add(key_of(svc)))
        endpoints.add_handler(lambda _t, ep, _o: self.queue.add(key_of(ep)))
        pods.add_handler(self._on_pod)

    def _on_pod(self, _kind: str, pod: dict, old: dict | None) -> None:
        namespace = meta(pod).get("namespace", "")
        labels = [meta(pod).get("labels")] + ([meta(old).get("labels")] if old else [])
        for svc in self.services.in_namespace(namespace):
            selector = (svc.get("spec") or {}).get("selector")
            if any(map_selector_matches(selector, lab) for lab in labels):
                self.queue.add(key_of(svc))

    def resync(self) -> None:
        for svc in self.services.all():
            self.queue.add(key_of(svc))

    def _backing_pods(self, svc: dict) -> list[dict]:
        selector = (svc.get("spec") or {}).get("selector")
        namespace = meta(svc).get("namespace", "")
        return sorted(
            (p for p in self.pods.in_namespace(namespace)
             if map_selector_matches(selector, meta(p).get("labels"))
             and not is_terminating(p)
             and (p.get("status") or {}).get("podIP")
             and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")),
            key=lambda p: meta(p).get("name", ""))

    async def reconcile(self, key: tuple[str, str]) -> None:
        namespace, name = key
        svc = self.services.get(namespace, name)
        current = self.endpoints.get(namespace, name)
        if svc is None:
            if current is not None:
                await self.client.delete(ENDPOINTS.path(namespace, name))
                self.endpoints.forget(namespace, name)
            return
        if not (svc.get("spec") or {}).get("selector"):
            return  # Endpoints of a selector-less Service are the user's to write

        subsets = self._subsets(svc)
        labels = dict(meta(svc).get("labels") or {})
        if current is None:
            body = {
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace, "labels": labels,
                             "annotations": {
                                 "endpoints.kubernetes.io/last-change-trigger-time":
                                     now_rfc3339()}},
            }
            if subsets:
                body["subsets"] = subsets
            self.endpoints.remember(await self.client.create(ENDPOINTS.path(namespace), body))
            return
        old_labels = meta(current).get("labels") or {}
        if (current.get("subsets") or []) == subsets and old_labels == labels:
            return
        label_patch = {k: v for k, v in labels.items() if old_labels.get(k) != v}
        label_patch.update({k: None for k in old_labels if k not in labels})
        patch = {
            "metadata": {"labels": label_patch, "annotations": {
                "endpoints.kubernetes.io/last-change-trigger-time": now_rfc3339()}},
            "subsets": subsets or None,
        }
        self.endpoints.remember(
            await self.client.merge_patch(ENDPOINTS.path(namespace, name), patch))

    def _subsets(self, svc: dict) -> list[dict]:
        ports = (svc.get("spec") or {}).get("ports") or []
        publish_all = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
        groups: dict[str, dict] = {}
        for pod in self._backing_pods(svc):
            resolved = []
            for sp in ports:
                number = target_port(sp, pod)
                if number is None:
                    continue
                entry = {"port": number, "protocol": sp.get("protocol", "TCP")}
                if sp.get("name"):
                    entry["name"] = sp["name"]
                resolved.append(entry)
            if ports and not resolved:
                continue
            group_key = repr(resolved)
            group = groups.setdefault(group_key, {"addresses": [], "notReadyAddresses": [],
                                                  "ports": resolved})
            m = meta(pod)
            address = {
                "ip": "127.0.0.1", "nodeName": (pod.get("spec") or {}).get("nodeName", ""),
                "targetRef": {"kind": "Pod", "namespace": m.get("namespace"),
                              "name": m.get("name"), "uid": m.get("uid")},
            }
            ready = pod_is_ready(pod) or publish_all
            group["addresses" if ready else "notReadyAddresses"].append(address)
        subsets = []
        for group in groups.values():
            subset = {k: v for k, v in group.items() if v}
            subsets.append(subset)
        return subsets

    # -- reaching a Service ---------------------------------------------------------------------

    def _service_port(self, svc: dict, port: int | str | None) -> dict | None:
        ports = (svc.get("spec") or {}).get("ports") or []
        if not ports:
            return None
        if port is None or port == "":
            return ports[0]
        text = str(port)
        for sp in ports:
            if sp.get("name") == text:
                return sp
        if text.isdigit():
            for sp in ports:
                if sp.get("port") == int(text):
                    return sp
            for sp in ports:
                if str(sp.get("targetPort")) == text:
                    return sp
        return None

    def local_port(self, namespace: str, service: str, port: int | str | None) -> int | None:
        """The local port of a ready pod behind ``service``'s ``port`` (round-robin)."""
        svc = self.services.get(namespace, service)
        if svc is None:
            return None
        sp = self._service_port(svc, port)
        if sp is None:
            return None
        candidates = []
        for pod in self._backing_pods(svc):
            if not pod_is_ready(pod):
                continue
            number = target_port(sp, pod)
            local = port_mapping(pod).get(number) if number is not None else None
            if local:
                candidates.append(local)
        if not candidates:
            return None
        turn = self._next.get((namespace, service), 0)
        self._next[(namespace, service)] = turn + 1
        return candidates[turn % len(candidates)]

    def service_url(self, namespace: str, service: str,
                    port: int | str | None = None) -> str | None:
        """The API server's ``service_resolver`` hook: a ready pod's local URL, or None."""
        local = self.local_port(namespace, service, port)
        return f"http://127.0.0.1:{local}" if local else None

    def resolve_host(self, host: str, port: int | None) -> tuple[str, int] | None:
        """Network resolver: a cluster DNS name of a Service → a ready pod's local address."""
        host = host.lower().rstrip(".")
        for suffix in _SUFFIXES:
            if suffix and not host.endswith(suffix):
                continue
            parts = host[: len(host) - len(suffix)].split(".")
            if len(parts) != 2:
                continue
            service, namespace = parts
            if self.services.get(namespace, service) is None:
                continue
            local = self.local_port(namespace, service, port)
            return ("127.0.0.1", local) if local else None
        return None
