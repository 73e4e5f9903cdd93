"""The sandbox Sealed Secrets controller, end to end, as a process against the sandbox API server.

Each test starts the sandbox API server (on a free port), installs the SealedSecret CRD as the
chart does and a ``sealed-secrets`` Service in ``kube-system``, then runs the controller as a
subprocess with ``KUBECONFIG`` and ``PORT``, as the kubelet does. The test plays the kubelet's
part of wiring the Service to the process's port (the API server's service-proxy hook), so
:func:`runbook_lib.sealing.fetch_certificate` goes through the API server like kubeseal does.

Plaintexts are compared, never printed, and every controller log is checked for them.
"""

from __future__ import annotations

import base64
import copy
import hmac
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runbook_lib import sealing
from runbook_lib.sandbox.addons import sealed_secrets as addon

from .conftest import VECTOR_PLAINTEXT

pytestmark = pytest.mark.timeout(90)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "bitnami.com", "v1alpha1", "sealedsecrets"


def eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (never a value)."""
    from kubernetes.client.rest import ApiException

    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except ApiException as exc:
            if exc.status != 404:
                raise
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not reached within {timeout:g} s")
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _decoded(secret: Any, key: str) -> bytes:
    return base64.b64decode(secret.data[key])


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


@dataclass
class Cluster:
    """One sandbox API server with the CRD and the controller's Service, and clients of it."""

    thread: Any
    kubeconfig: Path
    client: Any
    logs: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    plaintexts: list[bytes] = field(default_factory=list)

    @property
    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self.client)

    @property
    def custom(self):
        from kubernetes import client

        return client.CustomObjectsApi(self.client)

    # The controller process, as the kubelet runs it.

    def start_controller(self) -> tuple[subprocess.Popen, int, float]:
        """Start the controller; return it, its port and the seconds until /healthz answered."""
        port = _free_port()
        env = dict(
            os.environ,
            KUBECONFIG=str(self.kubeconfig),
            PORT=str(port),
            POD_NAMESPACE="kube-system",
            PYTHONUNBUFFERED="1",
        )
        log_file = open(self.logs / f"controller-{len(self.processes)}.log", "wb")  # noqa: SIM115
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "runbook_lib.sandbox.addons.sealed_secrets"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()
        self.processes.append(process)

        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"the controller exited with {process.returncode} during start")
            try:
                return _http("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200
            except OSError:
                return False

        eventually(healthy, "the controller answering /healthz", timeout=30)
        ready_s = time.monotonic() - started

        # The kubelet's part: the Service's endpoint is this process's port.
        def resolver(namespace: str, service: str, _port: str | None) -> str | None:
            if (namespace, service) == ("kube-system", "sealed-secrets"):
                return f"http://127.0.0.1:{port}"
            return None

        self.thread.call(lambda: setattr(self.thread.server, "service_resolver", resolver))
        return process, port, ready_s

    def stop_controller(self, process: subprocess.Popen) -> int:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    # Objects.

    def namespace(self, name: str) -> None:
        self.core.create_namespace({"metadata": {"name": name}})

    def apply_sealed(self, manifest: dict) -> dict:
        namespace = manifest["metadata"]["namespace"]
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, manifest
        )

    def sealed(self, namespace: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def synced(self, namespace: str, name: str, status: str) -> dict | None:
        """The Synced condition once it has ``status`` for the current generation, else None."""
        obj = self.sealed(namespace, name)
        current = obj.get("status") or {}
        if current.get("observedGeneration") != obj["metadata"].get("generation"):
            return None
        for condition in current.get("conditions") or []:
            if condition.get("type") == "Synced" and condition.get("status") == status:
                return condition
        return None

    def secret(self, namespace: str, name: str):
        return self.core.read_namespaced_secret(name, namespace)

    def key_secrets(self) -> list:
        return self.core.list_namespaced_secret(
            "kube-system", label_selector=f"{addon.KEY_LABEL}=active"
        ).items


@pytest.fixture(scope="module")
def kubeapi():
    try:
        from runbook_lib.sandbox.kubeapi import ServerThread, write_kubeconfig
    except ImportError as exc:
        pytest.skip(f"the sandbox API server (runbook_lib.sandbox.kubeapi) is not there: {exc}")
    return ServerThread, write_kubeconfig


@pytest.fixture
def cluster(kubeapi, tmp_path) -> Iterator[Cluster]:
    from kubernetes import client, config

    server_thread, write_kubeconfig = kubeapi
    thread = server_thread()
    thread.start()
    env = None
    try:
        kubeconfig = tmp_path / "kubeconfig"
        write_kubeconfig(kubeconfig, thread.url)
        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        logs = tmp_path / "logs"
        logs.mkdir()
        env = Cluster(thread, kubeconfig, api_client, logs)

        # What the chart installs besides the Deployment: the CRD and the Service.
        client.ApiextensionsV1Api(api_client).create_custom_resource_definition(addon.CRD)
        env.core.create_namespaced_service(
            "kube-system",
            {
                "metadata": {"name": "sealed-secrets"},
                "spec": {
                    "selector": {"app.kubernetes.io/name": "sealed-secrets"},
                    "ports": [{"name": "http", "port": 8080, "targetPort": "http"}],
                },
            },
        )
        yield env
    finally:
        try:
            for process in env.processes if env else []:
                env.stop_controller(process)
        finally:
            thread.stop()

    # No plaintext reached a controller log.
    for log_file in env.logs.iterdir():
        text = log_file.read_bytes()
        leaked = any(p in text or base64.b64encode(p) in text for p in env.plaintexts)
        assert not leaked, f"a plaintext appeared in {log_file.name}"


# ---------------------------------------------------------------------------------------------


def test_controller_makes_stores_and_serves_its_key(cluster):
    process, port, _ = cluster.start_controller()

    # One active key Secret, shaped as the real controller stores it.
    keys = cluster.key_secrets()
    assert len(keys) == 1
    key_secret = keys[0]
    assert key_secret.metadata.name.startswith("sealed-secrets-key")
    assert len(key_secret.metadata.name) == len("sealed-secrets-key") + 5
    assert key_secret.type == "kubernetes.io/tls"
    assert sorted(key_secret.data) == ["tls.crt", "tls.key"]
    stored_cert = _decoded(key_secret, "tls.crt")
    assert _decoded(key_secret, "tls.key").startswith(b"-----BEGIN RSA PRIVATE KEY-----")

    # The same certificate on the port, and through the API server's service proxy.
    assert _http("GET", f"http://127.0.0.1:{port}/healthz") == (200, b"ok\n")
    assert _http("GET", f"http://127.0.0.1:{port}/v1/cert.pem") == (200, stored_cert)
    assert sealing.fetch_certificate(cluster.client) == stored_cert

    # SIGTERM ends it cleanly and quickly.
    started = time.monotonic()
    assert cluster.stop_controller(process) == 0
    assert time.monotonic() - started < 5

    # A restart reuses the stored key instead of making another.
    cluster.start_controller()
    assert len(cluster.key_secrets()) == 1
    assert sealing.fetch_certificate(cluster.client) == stored_cert


def test_sealed_secret_becomes_an_owned_secret_and_follows_changes(cluster):
    cluster.start_controller()
    cert = sealing.fetch_certificate(cluster.client)
    url, password = b"postgresql://app:pw-one@db:5432/app", b"pw-one"
    cluster.plaintexts += [url, password]
    cluster.namespace("dbos")

    # Seal as the runbook does, apply, and wait for the Secret.
    manifest = sealing.sealed_secret(
        "dbos-app-db",
        "dbos",
        {"database-url": url, "password": password},
        cert,
        labels={"app.kubernetes.io/managed-by": "dbos-runbook"},
        annotations={"runbook.dbos.dev/note": "sealed"},
        secret_type="kubernetes.io/basic-auth",
    )
    created = cluster.apply_sealed(manifest)
    secret = eventually(lambda: cluster.secret("dbos", "dbos-app-db"), "the unsealed Secret")

    assert sorted(secret.data) == ["database-url", "password"]
    assert _same(_decoded(secret, "database-url"), url)
    assert _same(_decoded(secret, "password"), password)
    assert secret.type == "kubernetes.io/basic-auth"
    assert secret.metadata.labels == {"app.kubernetes.io/managed-by": "dbos-runbook"}
    assert secret.metadata.annotations == {"runbook.dbos.dev/note": "sealed"}
    (owner,) = secret.metadata.owner_references
    assert (owner.api_version, owner.kind, owner.name) == (
        "bitnami.com/v1alpha1",
        "SealedSecret",
        "dbos-app-db",
    )
    assert owner.uid == created["metadata"]["uid"] and owner.controller is True
    condition = eventually(
        lambda: cluster.synced("dbos", "dbos-app-db", "True"), "Synced True on the SealedSecret"
    )
    assert "message" not in condition
    reasons = {
        (e.involved_object.name, e.reason) for e in cluster.core.list_namespaced_event("dbos").items
    }
    assert ("dbos-app-db", "Unsealed") in reasons

    # A new value in the SealedSecret reaches the Secret.
    new_password = b"pw-two"
    cluster.plaintexts.append(new_password)
    resealed = sealing.seal_value(cert, new_password, namespace="dbos", name="dbos-app-db")
    cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, "dbos", PLURAL, "dbos-app-db",
        {"spec": {"encryptedData": {"password": resealed}}},
    )  # fmt: skip
    eventually(
        lambda: _same(_decoded(cluster.secret("dbos", "dbos-app-db"), "password"), new_password),
        "the Secret following the changed SealedSecret",
    )
    eventually(lambda: cluster.synced("dbos", "dbos-app-db", "True"), "Synced at generation 2")

    # A deleted Secret comes back while its SealedSecret stands.
    cluster.core.delete_namespaced_secret("dbos-app-db", "dbos")
    eventually(lambda: cluster.secret("dbos", "dbos-app-db"), "the Secret recreated")


def test_wrong_scope_names_and_foreign_secrets_are_refused(cluster):
    cluster.start_controller()
    cert = sealing.fetch_certificate(cluster.client)
    value = b"do-not-leak-this"
    cluster.plaintexts.append(value)
    cluster.namespace("dbos")

    # Sealed strict for one name, applied under another.
    renamed = sealing.sealed_secret("original", "dbos", {"token": value}, cert)
    renamed["metadata"]["name"] = renamed["spec"]["template"]["metadata"]["name"] = "renamed"
    cluster.apply_sealed(renamed)

    # Sealed strict, but declared cluster-wide.
    widened = sealing.sealed_secret("widened", "dbos", {"token": value, "other": value}, cert)
    widened["metadata"]["annotations"] = {sealing.ANNOTATION_CLUSTER_WIDE: "true"}
    cluster.apply_sealed(widened)

    # A Secret of that name already exists, and nothing owns it.
    cluster.core.create_namespaced_secret(
        "dbos", {"metadata": {"name": "taken"}, "stringData": {"mine": "untouched"}}
    )
    cluster.apply_sealed(sealing.sealed_secret("taken", "dbos", {"token": value}, cert))

    expected = {
        "renamed": "no key could decrypt secret (token)",
        "widened": "no key could decrypt secret (other, token)",
        "taken": 'failed update: Resource "taken" already exists and is not managed by '
        "SealedSecret",
    }
    for name, message in expected.items():
        condition = eventually(lambda n=name: cluster.synced("dbos", n, "False"), f"{name} False")
        assert condition["message"] == message
    for name in ("renamed", "widened"):
        assert name not in {
            s.metadata.name for s in cluster.core.list_namespaced_secret("dbos").items
        }
    taken = cluster.secret("dbos", "taken")
    assert sorted(taken.data) == ["mine"] and not taken.metadata.owner_references


def test_the_vectors_key_unseals_the_vectors_sealed_secret(cluster, vector):
    # Install the real controller's key as the active key, as a key restore would.
    cluster.core.create_namespaced_secret(
        "kube-system",
        {
            "metadata": {"name": "sealed-secrets-keyvectr", "labels": {addon.KEY_LABEL: "active"}},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64.b64encode(vector.cert_pem).decode(),
                "tls.key": base64.b64encode(vector.key_pem).decode(),
            },
        },
    )
    cluster.plaintexts.append(VECTOR_PLAINTEXT)
    _, port, _ = cluster.start_controller()

    # It uses that key (no new one) and serves its certificate.
    assert [s.metadata.name for s in cluster.key_secrets()] == ["sealed-secrets-keyvectr"]
    assert sealing.fetch_certificate(cluster.client) == vector.cert_pem

    # kubeseal's own output, applied as is, becomes the Secret.
    cluster.namespace("foo")
    status, _ = _http("POST", f"http://127.0.0.1:{port}/v1/verify", _json(vector.sealed_secret))
    assert status == 200
    cluster.apply_sealed(copy.deepcopy(vector.sealed_secret))
    secret = eventually(lambda: cluster.secret("foo", "credentials"), "the vector's Secret")
    assert secret.type == "Opaque"
    assert _same(_decoded(secret, "token"), VECTOR_PLAINTEXT)
    eventually(lambda: cluster.synced("foo", "credentials", "True"), "the vector Synced True")

    # Moved to another namespace, it does not verify.
    moved = copy.deepcopy(vector.sealed_secret)
    moved["metadata"]["namespace"] = "bar"
    status, _ = _http("POST", f"http://127.0.0.1:{port}/v1/verify", _json(moved))
    assert status == 409


def _json(obj: dict) -> bytes:
    import json

    return json.dumps(obj).encode()
