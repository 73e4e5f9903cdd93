"""The sandbox's Sealed Secrets controller: ``python -m runbook_lib.sandbox.addons.sealed_secrets``.

The sandbox kubelet runs this program as the pod process of the
``docker.io/bitnami/sealed-secrets-controller`` image, which the helm stand-in installs as
Deployment ``sealed-secrets`` in ``kube-system``. It reads ``KUBECONFIG`` and ``PORT`` from the
environment (its namespace from ``POD_NAMESPACE``, else from its pod, named by ``HOSTNAME``,
else ``kube-system``) and behaves as the real controller does, as far as the runbook can see:

- keys: on start it loads every key Secret of its namespace labelled
  ``sealedsecrets.bitnami.com/sealed-secrets-key=active`` (type ``kubernetes.io/tls``, PEM in
  ``tls.crt`` and ``tls.key``); it seals with the newest and unseals with any. With none, it
  generates one (RSA-4096, as :func:`runbook_lib.sealing.generate_controller_key`) and stores it
  as ``sealed-secrets-key<suffix>``;
- HTTP on ``PORT`` (only once a key is ready): ``GET /v1/cert.pem``, ``GET /healthz``,
  ``GET /readyz``, ``POST /v1/verify`` (200 when the posted SealedSecret opens, 409 when not) and
  ``POST /v1/rotate`` (the SealedSecret sealed again with the newest key);
- it watches SealedSecrets in all namespaces and unseals each into a Secret carrying the
  template's metadata and type, owned by the SealedSecret (``controller: true``); it updates
  the Secret when the SealedSecret's spec changes, recreates it when it is deleted, and refuses
  a Secret of that name that it does not manage. ``status`` has a ``Synced`` condition (with the
  error's message when False, never a value) and ``observedGeneration``; events are recorded.

It talks to the API server over plain HTTP (a small kubeconfig reader below), because importing
the official client takes several seconds here and this process starts with every sandbox run.

Known limits: no automatic key renewal (the real controller adds a key every 30 days) and no
``spec.template.data`` templating; a SealedSecret that uses templates is reported Synced False.
Deleting a SealedSecret leaves its Secret to the garbage collector, as in a real cluster.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import logging
import os
import queue
import secrets
import signal
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from runbook_lib import sealing
from runbook_lib.errors import ParameterError

log = logging.getLogger("runbook_lib.sandbox.addons.sealed_secrets")

GROUP = "bitnami.com"
VERSION = "v1alpha1"
SEALED_SECRETS_PATH = f"/apis/{GROUP}/{VERSION}/sealedsecrets"

KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"
KEY_PREFIX = "sealed-secrets-key"
MANAGED_ANNOTATION = "sealedsecrets.bitnami.com/managed"
PATCH_ANNOTATION = "sealedsecrets.bitnami.com/patch"
SKIP_OWNER_ANNOTATION = "sealedsecrets.bitnami.com/skip-set-owner-references"

WATCH_TIMEOUT_S = 60
MAX_RETRIES = 5

# The SealedSecret CRD as the chart installs it (schema kept, descriptions left out).
CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"sealedsecrets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "names": {
            "kind": "SealedSecret",
            "listKind": "SealedSecretList",
            "plural": "sealedsecrets",
            "singular": "sealedsecret",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {
                        "name": "Status",
                        "type": "string",
                        "jsonPath": ".status.conditions[0].message",
                    },
                    {
                        "name": "Synced",
                        "type": "string",
                        "jsonPath": ".status.conditions[0].status",
                    },
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "required": ["spec"],
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "required": ["encryptedData"],
                                "properties": {
                                    "data": {"type": "string", "format": "byte"},
                                    "encryptedData": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                    "template": {
                                        "type": "object",
                                        "properties": {
                                            "data": {
                                                "type": "object",
                                                "nullable": True,
                                                "additionalProperties": {"type": "string"},
                                            },
                                            "immutable": {"type": "boolean"},
                                            "metadata": {
                                                "type": "object",
                                                "nullable": True,
                                                "x-kubernetes-preserve-unknown-fields": True,
                                            },
                                            "type": {"type": "string"},
                                        },
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "conditions": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["status", "type"],
                                            "properties": {
                                                "lastTransitionTime": {
                                                    "type": "string",
                                                    "format": "date-time",
                                                },
                                                "lastUpdateTime": {
                                                    "type": "string",
                                                    "format": "date-time",
                                                },
                                                "message": {"type": "string"},
                                                "reason": {"type": "string"},
                                                "status": {"type": "string"},
                                                "type": {"type": "string"},
                                            },
                                        },
                                    },
                                    "observedGeneration": {"type": "integer", "format": "int64"},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# A small API client over plain HTTP


class ApiError(Exception):
    """The API server answered with an error status (its own message, which holds no value)."""

    def __init__(self, status: int, reason: str, message: str = ""):
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")


class KubeHTTP:
    """Requests to the API server described by a kubeconfig file (its current context)."""

    def __init__(self, server: str, headers: dict[str, str], context: ssl.SSLContext | None):
        parts = urlsplit(server)
        self.scheme = parts.scheme or "http"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.headers = headers
        self.context = context

    @classmethod
    def from_kubeconfig(cls, path: str) -> KubeHTTP:
        """Read server, TLS and credentials of the current context of the kubeconfig ``path``."""
        import yaml

        # KUBECONFIG may list several files; the first that exists holds our context.
        files = [p for p in path.split(os.pathsep) if p and Path(p).exists()]
        if not files:
            raise FileNotFoundError(f"no kubeconfig file at {path!r}")
        base = Path(files[0]).parent
        config = yaml.safe_load(Path(files[0]).read_text()) or {}

        def named(section: str, name: str | None) -> dict:
            for entry in config.get(section) or []:
                if entry.get("name") == name:
                    return entry.get(section[:-1]) or {}
            return {}

        context = named("contexts", config.get("current-context"))
        if not context and config.get("contexts"):
            context = config["contexts"][0].get("context") or {}
        cluster = named("clusters", context.get("cluster"))
        user = named("users", context.get("user"))
        server = cluster.get("server")
        if not server:
            raise ValueError(f"the kubeconfig {files[0]} names no server")

        # Credentials: a bearer token, basic auth, or a client certificate.
        headers = {"Accept": "application/json", "User-Agent": "sealed-secrets-sandbox"}
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = (base / user["tokenFile"]).read_text().strip()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif user.get("username"):
            pair = f"{user['username']}:{user.get('password', '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()

        context_tls = None
        if server.startswith("https"):
            context_tls = ssl.create_default_context()
            if cluster.get("insecure-skip-tls-verify"):
                context_tls.check_hostname = False
                context_tls.verify_mode = ssl.CERT_NONE
            elif cluster.get("certificate-authority-data"):
                ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
                context_tls.load_verify_locations(cadata=ca)
            elif cluster.get("certificate-authority"):
                context_tls.load_verify_locations(
                    cafile=str(base / cluster["certificate-authority"])
                )
            _load_client_cert(context_tls, user, base)
        return cls(server, headers, context_tls)

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self.context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _url(self, path: str, query: dict[str, Any] | None) -> str:
        url = self.prefix + path
        return f"{url}?{urlencode(query)}" if query else url

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        timeout: float = 15,
    ) -> Any:
        """One request; the decoded JSON answer, or ApiError for a status of 400 and above."""
        headers = dict(self.headers)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = self._connection(timeout)
        try:
            conn.request(method, self._url(path, query), body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status >= 400:
            raise _api_error(response.status, response.reason, data)
        return json.loads(data) if data else None

    def watch(
        self, path: str, query: dict[str, Any], stop: threading.Event
    ) -> Iterator[dict[str, Any]]:
        """Watch events from ``path`` (one ``timeoutSeconds`` window); ends when the server does.

        The socket timeout exceeds the server's window, so a server that ignores the window
        still ends the watch, and the caller reconnects.
        """
        query = dict(query, watch="true", timeoutSeconds=WATCH_TIMEOUT_S)
        conn = self._connection(WATCH_TIMEOUT_S + 15)
        try:
            conn.request("GET", self._url(path, query), headers=self.headers)
            response = conn.getresponse()
            if response.status >= 400:
                raise _api_error(response.status, response.reason, response.read())
            while not stop.is_set():
                line = response.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


def _api_error(status: int, reason: str, data: bytes) -> ApiError:
    message = ""
    try:
        message = json.loads(data).get("message", "")
    except (ValueError, AttributeError):
        pass
    return ApiError(status, reason, message)


def _load_client_cert(context: ssl.SSLContext, user: dict, base: Path) -> None:
    cert, key = user.get("client-certificate"), user.get("client-key")
    if cert and key:
        context.load_cert_chain(str(base / cert), str(base / key))
        return
    if not (user.get("client-certificate-data") and user.get("client-key-data")):
        return
    # The ssl module loads client credentials from files only: a private, short-lived folder.
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder, "client.crt"), Path(folder, "client.key")
        for target, field in (
            (cert_file, "client-certificate-data"),
            (key_file, "client-key-data"),
        ):
            target.touch(mode=0o600)
            target.write_bytes(base64.b64decode(user[field]))
        context.load_cert_chain(str(cert_file), str(key_file))


# ---------------------------------------------------------------------------------------------
# Keys


class KeyRegistry:
    """The controller's key pairs: every active key unseals, the newest one seals."""

    def __init__(self, api: KubeHTTP, namespace: str, prefix: str = KEY_PREFIX):
        self.api = api
        self.namespace = namespace
        self.prefix = prefix
        self.private_keys: list[Any] = []
        self.cert_pem = b""
        self._newest: tuple[dt.datetime, int] | None = None

    def load(self) -> int:
        """Read the active key Secrets of the namespace; return how many keys were read."""
        listing = self.api.request(
            "GET",
            f"/api/v1/namespaces/{self.namespace}/secrets",
            query={"labelSelector": f"{KEY_LABEL}=active"},
        )
        items = list(listing.get("items") or [])

        # The legacy key Secret, named exactly the prefix, counts even without the label.
        try:
            legacy = self.api.request(
                "GET", f"/api/v1/namespaces/{self.namespace}/secrets/{self.prefix}"
            )
            if all(i["metadata"]["name"] != self.prefix for i in items):
                items.append(legacy)
        except ApiError as exc:
            if exc.status != 404:
                raise

        items.sort(key=lambda s: s["metadata"].get("creationTimestamp") or "")
        for secret in items:
            name = secret["metadata"]["name"]
            try:
                data = secret.get("data") or {}
                key_pem = base64.b64decode(data["tls.key"])
                cert_pem = base64.b64decode(data["tls.crt"])
                self.register(sealing.load_private_key(key_pem, trusted=True), cert_pem)
            except (KeyError, ValueError, sealing.UnsealError, ParameterError):
                log.error(
                    "key Secret %s/%s is not a readable key pair; skipped", self.namespace, name
                )
                continue
            log.info("using key Secret %s/%s", self.namespace, name)
        return len(self.private_keys)

    def register(self, private_key: Any, cert_pem: bytes) -> None:
        """Add a key pair; the one whose certificate is newest (not-before) seals from now on."""
        from cryptography import x509

        # Only the first certificate of the PEM counts, as in the real controller.
        first = cert_pem.split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
        not_before = x509.load_pem_x509_certificate(first).not_valid_before_utc
        self.private_keys.append(private_key)
        order = (not_before, len(self.private_keys))
        if self._newest is None or order > self._newest:
            self._newest = order
            self.cert_pem = first

    def generate(self, common_name: str = "") -> str:
        """Make a new key pair, store it as an active key Secret, and use it; return its name."""
        started = time.monotonic()
        key_pem, cert_pem = sealing.generate_controller_key(common_name)
        log.info(
            "generated a new %d-bit key in %.1f s", sealing.KEY_SIZE, time.monotonic() - started
        )

        # The real controller asks for a generated name; the same shape of name is made here.
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        name = self.prefix + "".join(secrets.choice(alphabet) for _ in range(5))
        self.api.request(
            "POST",
            f"/api/v1/namespaces/{self.namespace}/secrets",
            body={
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": {KEY_LABEL: "active"},
                },
                "type": "kubernetes.io/tls",
                "data": {
                    "tls.crt": base64.b64encode(cert_pem).decode(),
                    "tls.key": base64.b64encode(key_pem).decode(),
                },
            },
        )
        self.register(sealing.load_private_key(key_pem, trusted=True), cert_pem)
        log.info("new key written to Secret %s/%s", self.namespace, name)
        return name


# ---------------------------------------------------------------------------------------------
# Unsealing a SealedSecret


def _format_errors(errors: dict[str, str]) -> str:
    """Group per-key errors as the real controller does: ``message (key1, key2)``."""
    grouped: dict[str, list[str]] = {}
    for key_name in sorted(errors):
        grouped.setdefault(errors[key_name], []).append(key_name)
    return ", ".join(f"{message} ({', '.join(keys)})" for message, keys in grouped.items())


def unseal_secret(sealed: dict[str, Any], private_keys: list[Any]) -> dict[str, Any]:
    """The Secret a SealedSecret stands for (data base64-encoded, as the API takes it).

    Raises :class:`runbook_lib.sealing.UnsealError` naming the keys that did not open.
    """
    meta = sealed.get("metadata") or {}
    spec = sealed.get("spec") or {}
    template = spec.get("template") or {}
    namespace, name = meta.get("namespace"), meta.get("name")

    # The SealedSecret's own annotations choose the scope, hence the label each value needs.
    scope = sealing.scope_of(meta.get("annotations"))
    encrypted = spec.get("encryptedData")
    if encrypted is None and spec.get("data"):
        raise sealing.UnsealError(
            "using deprecated 'data' field, use 'encryptedData' or flip the feature flag"
        )
    if template.get("data"):
        raise sealing.UnsealError("spec.template.data is not supported by the sandbox controller")

    data: dict[str, str] = {}
    errors: dict[str, str] = {}
    for key_name, value in (encrypted or {}).items():
        try:
            plaintext = sealing.unseal_value(
                private_keys, value, namespace=namespace, name=name, scope=scope
            )
        except sealing.UnsealError as exc:
            errors[key_name] = str(exc)
            continue
        data[key_name] = base64.b64encode(plaintext).decode()
    if errors:
        raise sealing.UnsealError(_format_errors(errors))

    # The template's metadata, then what the controller insists on: name, namespace, owner.
    secret_meta = {
        k: v
        for k, v in (template.get("metadata") or {}).items()
        if k not in ("creationTimestamp", "resourceVersion", "uid", "ownerReferences")
        and v is not None
    }
    secret_meta["name"] = name
    secret_meta["namespace"] = namespace
    if (secret_meta.get("annotations") or {}).get(SKIP_OWNER_ANNOTATION) != "true":
        secret_meta["ownerReferences"] = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "SealedSecret",
                "name": name,
                "uid": meta.get("uid"),
                "controller": True,
            }
        ]
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": secret_meta,
        "data": data,
        "type": template.get("type") or "Opaque",
    }
    if template.get("immutable") is not None:
        secret["immutable"] = template["immutable"]
    return secret


def _controlled_by(secret: dict[str, Any], sealed: dict[str, Any]) -> bool:
    uid = (sealed.get("metadata") or {}).get("uid")
    for ref in (secret.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") == uid:
            return True
    return False


class Controller:
    """Unseals SealedSecrets into Secrets, one at a time, from a queue of ``namespace/name``."""

    def __init__(self, api: KubeHTTP, keys: KeyRegistry):
        self.api = api
        self.keys = keys
        self._queue: queue.Queue[str] = queue.Queue()
        self._pending: set[str] = set()
        self._retries: dict[str, int] = {}
        self._lock = threading.Lock()

    def wake(self) -> None:
        """Let a waiting worker notice at once that it should stop."""
        self._queue.put("")

    def enqueue(self, key: str) -> None:
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self._queue.put(key)

    def run(self, stop: threading.Event) -> None:
        """Work the queue until ``stop``; a failed API call is retried a few times."""
        while not stop.is_set():
            try:
                key = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if not key:
                continue
            with self._lock:
                self._pending.discard(key)
            try:
                self.reconcile(key)
                self._retries.pop(key, None)
            except (ApiError, OSError) as exc:
                tries = self._retries.get(key, 0) + 1
                if tries > MAX_RETRIES:
                    log.error("error updating %s, giving up: %s", key, exc)
                    self._retries.pop(key, None)
                    continue
                self._retries[key] = tries
                log.warning("error updating %s, will retry: %s", key, exc)
                timer = threading.Timer(0.2 * 2**tries, self.enqueue, args=(key,))
                timer.daemon = True
                timer.start()

    def reconcile(self, key: str) -> None:
        """Bring the Secret of SealedSecret ``key`` in line with it, and record the outcome."""
        namespace, name = key.split("/", 1)
        try:
            sealed = self.api.request(
                "GET", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/sealedsecrets/{name}"
            )
        except ApiError as exc:
            if exc.status == 404:
                return
            raise
        log.info("updating %s", key)

        error = None
        try:
            self._sync_secret(sealed)
        except sealing.UnsealError as exc:
            error = str(exc)
            self._event(sealed, "Warning", "ErrUnsealFailed", f"Failed to unseal: {error}")
        except _Unmanaged as exc:
            error = str(exc)
            self._event(sealed, "Warning", "ErrUpdateFailed", exc.message)
        except ApiError as exc:
            # Recorded in status like any failure, then retried by the worker.
            self._event(sealed, "Warning", "ErrUpdateFailed", str(exc))
            self._update_status(sealed, str(exc))
            raise
        else:
            self._event(sealed, "Normal", "Unsealed", "SealedSecret unsealed successfully")
        if error:
            log.warning("SealedSecret %s not synced: %s", key, error)
        self._update_status(sealed, error)

    def _sync_secret(self, sealed: dict[str, Any]) -> None:
        desired = unseal_secret(sealed, self.keys.private_keys)
        meta = desired["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/secrets"

        # Create the Secret when there is none.
        try:
            current = self.api.request("GET", f"{path}/{meta['name']}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            self.api.request("POST", path, body=desired)
            return

        # Touch an existing Secret only when this SealedSecret manages it.
        annotations = current["metadata"].get("annotations") or {}
        managed = annotations.get(MANAGED_ANNOTATION) == "true"
        patch = annotations.get(PATCH_ANNOTATION) == "true"
        if not (_controlled_by(current, sealed) or managed or patch):
            raise _Unmanaged(meta["name"])

        updated = json.loads(json.dumps(current))
        if patch:
            updated.setdefault("data", {}).update(desired["data"])
            for field in ("annotations", "labels"):
                merged = updated["metadata"].get(field) or {}
                merged.update(meta.get(field) or {})
                updated["metadata"][field] = merged
            if managed and "ownerReferences" in meta:
                updated["metadata"]["ownerReferences"] = meta["ownerReferences"]
        else:
            updated["data"] = desired["data"]
            for field in ("annotations", "labels", "ownerReferences"):
                if meta.get(field):
                    updated["metadata"][field] = meta[field]
                else:
                    updated["metadata"].pop(field, None)
        updated["type"] = desired["type"]
        if updated != current:
            self.api.request("PUT", f"{path}/{meta['name']}", body=updated)

    def _update_status(self, sealed: dict[str, Any], error: str | None) -> None:
        meta = sealed["metadata"]
        path = (
            f"/apis/{GROUP}/{VERSION}/namespaces/{meta['namespace']}/sealedsecrets/{meta['name']}"
        )
        generation = meta.get("generation")
        for _attempt in range(3):
            status = dict(sealed.get("status") or {})
            conditions = [dict(c) for c in status.get("conditions") or []]
            synced = next((c for c in conditions if c.get("type") == "Synced"), None)
            if synced is None:
                synced = {"type": "Synced"}
                conditions.append(synced)
            value = "False" if error else "True"
            before = dict(synced)
            now = _now()
            if synced.get("status") != value:
                synced["lastTransitionTime"] = now
            synced["status"] = value
            if error:
                synced["message"] = error
            else:
                synced.pop("message", None)
            if synced == before and status.get("observedGeneration") == generation:
                return
            synced["lastUpdateTime"] = now
            status["conditions"] = conditions
            if generation is not None:
                status["observedGeneration"] = generation
            body = dict(sealed, status=status)
            try:
                try:
                    self.api.request("PUT", f"{path}/status", body=body)
                except ApiError as exc:
                    # A CRD without the status subresource keeps status in the object itself.
                    if exc.status != 404:
                        raise
                    self.api.request("PUT", path, body=body)
                return
            except ApiError as exc:
                if exc.status != 409:
                    raise
                # Written meanwhile: go on only if the spec we unsealed is still the current.
                sealed = self.api.request("GET", path)
                if sealed["metadata"].get("generation") != generation:
                    return

    def _event(self, sealed: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """Record an event on the SealedSecret, as the real controller does (best effort)."""
        meta = sealed["metadata"]
        now = _now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{time.time_ns():x}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "SealedSecret",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "sealed-secrets"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.api.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)
        except (ApiError, OSError) as exc:
            log.debug("event not recorded: %s", exc)

    # The HTTP endpoints' work.

    def verify(self, sealed: dict[str, Any]) -> bool:
        try:
            unseal_secret(sealed, self.keys.private_keys)
        except sealing.UnsealError:
            return False
        return True

    def rotate(self, sealed: dict[str, Any]) -> dict[str, Any]:
        """The SealedSecret with every value sealed again with the newest key."""
        secret = unseal_secret(sealed, self.keys.private_keys)
        meta = sealed["metadata"]
        scope = sealing.scope_of(meta.get("annotations"))
        resealed = json.loads(json.dumps(sealed))
        resealed["spec"]["encryptedData"] = {
            k: sealing.seal_value(
                self.keys.cert_pem,
                base64.b64decode(v),
                namespace=meta.get("namespace"),
                name=meta.get("name"),
                scope=scope,
            )
            for k, v in secret["data"].items()
        }
        return resealed


class _Unmanaged(Exception):
    def __init__(self, name: str):
        self.message = f'Resource "{name}" already exists and is not managed by SealedSecret'
        super().__init__(f"failed update: {self.message}")


# ---------------------------------------------------------------------------------------------
# Watching


class Watcher(threading.Thread):
    """List then watch one collection, reconnecting; hands each change to ``on_event``."""

    def __init__(
        self,
        api: KubeHTTP,
        path: str,
        on_event: Callable[[str, dict[str, Any]], None],
        stop: threading.Event,
        what: str,
    ):
        super().__init__(name=f"watch {what}", daemon=True)
        self.api = api
        self.path = path
        self.on_event = on_event
        self.stop = stop
        self.what = what

    def run(self) -> None:
        failures = 0
        version = None
        while not self.stop.is_set():
            try:
                if version is None:
                    listing = self.api.request("GET", self.path)
                    version = (listing.get("metadata") or {}).get("resourceVersion") or ""
                    self.on_event("LIST", listing)
                version = self._watch_from(version)
                failures = 0
            except (ApiError, OSError, ValueError) as exc:
                # A missing CRD or an API server restart: wait and list again.
                failures += 1
                level = logging.INFO if failures in (1, 30) else logging.DEBUG
                log.log(level, "watching %s failed (%s); retrying", self.what, exc)
                version = None
                self.stop.wait(min(0.5 * failures, 2.0))

    def _watch_from(self, version: str) -> str | None:
        """Follow events from ``version``; return where to go on, or None to list again."""
        query: dict[str, Any] = {"allowWatchBookmarks": "true"}
        if version:
            query["resourceVersion"] = version
        for event in self.api.watch(self.path, query, self.stop):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                log.debug("watch of %s ended: %s", self.what, obj.get("message"))
                return None
            version = (obj.get("metadata") or {}).get("resourceVersion") or version
            if kind != "BOOKMARK":
                self.on_event(kind, obj)
        return version


class SealedSecretEvents:
    """Turns SealedSecret watch events into queue entries; spec-less changes are ignored."""

    def __init__(self, controller: Controller):
        self.controller = controller
        self._specs: dict[str, str] = {}

    def __call__(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "LIST":
            seen = set()
            for item in obj.get("items") or []:
                seen.add(self._offer(item))
            for gone in set(self._specs) - seen:
                del self._specs[gone]
            return
        key = _key(obj)
        if kind == "DELETED":
            self._specs.pop(key, None)
            return
        self._offer(obj)

    def _offer(self, obj: dict[str, Any]) -> str:
        key = _key(obj)
        spec = json.dumps(obj.get("spec"), sort_keys=True)
        if self._specs.get(key) != spec:
            self._specs[key] = spec
            self.controller.enqueue(key)
        return key


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _on_secret_event(controller: Controller) -> Callable[[str, dict[str, Any]], None]:
    """Recreate a Secret that was deleted while its SealedSecret still stands."""

    def handle(kind: str, obj: dict[str, Any]) -> None:
        if kind != "DELETED":
            return
        meta = obj.get("metadata") or {}
        owned = any(
            ref.get("kind") == "SealedSecret" and ref.get("controller")
            for ref in meta.get("ownerReferences") or []
        )
        if owned or (meta.get("annotations") or {}).get(MANAGED_ANNOTATION) == "true":
            controller.enqueue(_key(obj))

    return handle


# ---------------------------------------------------------------------------------------------
# HTTP


def _handler(keys: KeyRegistry, controller: Controller) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "sealed-secrets-sandbox"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

        def _send(self, code: int, body: bytes = b"", content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path in ("/healthz", "/readyz"):
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == "/v1/cert.pem":
                self._send(200, keys.cert_pem, "application/x-pem-file")
            else:
                self._send(404, b"404 page not found\n")

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            if path not in ("/v1/verify", "/v1/rotate"):
                self._send(404, b"404 page not found\n")
                return
            try:
                sealed = _read_object(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            except ValueError:
                self._send(400)
                return
            if path == "/v1/verify":
                self._send(200 if controller.verify(sealed) else 409)
                return
            try:
                resealed = controller.rotate(sealed)
            except sealing.UnsealError:
                self._send(409)
                return
            self._send(200, json.dumps(resealed).encode(), "application/json")

    return Handler


def _read_object(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except ValueError:
        import yaml

        try:
            obj = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise ValueError("not JSON or YAML") from exc
    if not isinstance(obj, dict) or obj.get("kind") != "SealedSecret":
        raise ValueError("not a SealedSecret")
    return obj


# ---------------------------------------------------------------------------------------------
# The program


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sealed-secrets-controller (sandbox)")
    parser.add_argument("--key-prefix", default=KEY_PREFIX)
    parser.add_argument("--listen-addr", default=":8080")
    parser.add_argument("--my-cn", default="")
    # The chart passes more flags (renewal, metrics, status updates); they change nothing here.
    args, _unknown = parser.parse_known_args(argv)
    return args


def _own_namespace(api: KubeHTTP) -> str:
    """The namespace of our pod (the kubelet names us in HOSTNAME), else ``kube-system``.

    The real controller reads its service account's namespace file; the sandbox has none.
    """
    pod = os.environ.get("HOSTNAME")
    if pod:
        try:
            pods = api.request(
                "GET", "/api/v1/pods", query={"fieldSelector": f"metadata.name={pod}"}
            )
            namespaces = {p["metadata"]["namespace"] for p in pods.get("items") or []}
            if len(namespaces) == 1:
                return namespaces.pop()
        except (ApiError, OSError, KeyError) as exc:
            log.debug("could not find our pod %s: %s", pod, exc)
    return "kube-system"


def _with_retries(step: Callable[[], Any], what: str, stop: threading.Event) -> Any:
    """Run ``step`` until it succeeds or ``stop``; the API server may still be starting."""
    delay = 0.2
    while True:
        try:
            return step()
        except (ApiError, OSError) as exc:
            if stop.is_set():
                raise
            log.warning("%s failed (%s); retrying", what, exc)
            stop.wait(delay)
            delay = min(delay * 2, 3.0)


def main(argv: list[str] | None = None) -> int:
    """Run the controller until SIGTERM; the exit status for the kubelet."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = _parse_args(argv if argv is not None else sys.argv[1:])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    # Connect: the kubeconfig and our namespace.
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        log.error("KUBECONFIG is not set")
        return 1
    try:
        api = KubeHTTP.from_kubeconfig(kubeconfig)
    except (OSError, ValueError) as exc:
        log.error("cannot use the kubeconfig: %s", exc)
        return 1
    namespace = os.environ.get("POD_NAMESPACE") or _own_namespace(api)
    host, _, port_text = args.listen_addr.rpartition(":")
    port = int(os.environ.get("PORT") or port_text or 8080)

    # Keys: the active ones, or a new one.
    keys = KeyRegistry(api, namespace, args.key_prefix)
    try:
        if not _with_retries(keys.load, "reading the key Secrets", stop):
            _with_retries(lambda: keys.generate(args.my_cn), "storing a new key", stop)
    except (ApiError, OSError):
        return 0 if stop.is_set() else 1
    if stop.is_set():
        return 0

    # Serve the certificate, then watch and unseal.
    controller = Controller(api, keys)
    server = ThreadingHTTPServer((host or "127.0.0.1", port), _handler(keys, controller))
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="http", daemon=True
    ).start()
    log.info("HTTP server serving on %s:%d", host or "127.0.0.1", port)
    Watcher(api, SEALED_SECRETS_PATH, SealedSecretEvents(controller), stop, "SealedSecrets").start()
    Watcher(api, "/api/v1/secrets", _on_secret_event(controller), stop, "Secrets").start()
    worker = threading.Thread(target=controller.run, args=(stop,), name="worker", daemon=True)
    worker.start()

    # Run until SIGTERM; let the current unseal finish, then stop serving.
    while not stop.wait(0.2):
        pass
    log.info("shutting down")
    controller.wake()
    worker.join(timeout=5)
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
