"""Pod logs (served from the sandbox's log hooks) and the service proxy (through its resolver).

Both need sandbox hooks to have something to serve, so they are skipped on a real cluster,
except the parts that hold anywhere (404 for a missing pod or service).
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from .support import Target, raw_request, status_of


def two_container_pod(name: str) -> dict:
    return {"metadata": {"name": name}, "spec": {
        "nodeName": "conformance-ghost-node",
        "containers": [{"name": "app", "image": "busybox:1.36"},
                       {"name": "side", "image": "busybox:1.36"}]}}


@pytest.fixture
def log_hooks(target: Target) -> Iterator[dict]:
    """Install a provider serving texts from a dict; restore the defaults afterwards."""
    server = target.server
    texts: dict[tuple[str, str, str | None, bool], str] = {}
    saved = (server.pod_log_provider, server.pod_log_follower)

    def provider(namespace: str, pod: str, container: str | None, previous: bool) -> str | None:
        return texts.get((namespace, pod, container, previous))

    target.on_server(lambda: setattr(server, "pod_log_provider", provider))
    try:
        yield texts
    finally:
        def restore() -> None:
            server.pod_log_provider, server.pod_log_follower = saved

        target.on_server(restore)


def test_pod_log(core: client.CoreV1Api, ns: str, log_hooks: dict) -> None:
    core.create_namespaced_pod(ns, two_container_pod("logged"))
    log_hooks[(ns, "logged", "app", False)] = "one\ntwo\nthree\n"
    log_hooks[(ns, "logged", "app", True)] = "before the restart\n"
    assert core.read_namespaced_pod_log("logged", ns, container="app") == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log("logged", ns, container="app",
                                        tail_lines=2) == "two\nthree\n"
    assert core.read_namespaced_pod_log("logged", ns, container="app",
                                        previous=True) == "before the restart\n"

    # Two containers and none named: 400, naming the choices.
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_pod_log("logged", ns)
    assert caught.value.status == 400
    assert "a container name must be specified" in status_of(caught.value)["message"]
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_pod_log("logged", ns, container="nope")
    assert caught.value.status == 400
    # A container with no log yet is waiting to start.
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_pod_log("logged", ns, container="side")
    assert caught.value.status == 400
    assert "is waiting to start" in status_of(caught.value)["message"]


def test_pod_log_follow(target: Target, core: client.CoreV1Api, ns: str,
                        log_hooks: dict) -> None:
    core.create_namespaced_pod(ns, {"metadata": {"name": "follow"}, "spec": {
        "nodeName": "conformance-ghost-node",
        "containers": [{"name": "app", "image": "busybox:1.36"}]}})
    log_hooks[(ns, "follow", "app", False)] = "start\n"
    server = target.server

    async def follower(namespace: str, pod: str, container: str | None) -> AsyncIterator[bytes]:
        for line in (b"more\n", b"end\n"):
            yield line

    target.on_server(lambda: setattr(server, "pod_log_follower", follower))
    response = core.read_namespaced_pod_log("follow", ns, follow=True, _preload_content=False)
    text = b"".join(response.stream()).decode()
    assert text == "start\nmore\nend\n"


def test_pod_log_missing_pod(core: client.CoreV1Api, ns: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        core.read_namespaced_pod_log("absent", ns)
    assert caught.value.status == 404


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class _Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.path.endswith(".pem"):
            payload, kind = PEM.encode(), "text/plain"
        else:
            payload = json.dumps({"method": self.command, "path": self.path,
                                  "body": body}).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def echo_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_service_proxy(target: Target, core: client.CoreV1Api, ns: str,
                       echo_server: str) -> None:
    server = target.server
    core.create_namespaced_service(ns, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080}]}})
    asked: list[tuple[str, str, str | None]] = []

    def resolver(namespace: str, service: str, port: str | None) -> str | None:
        asked.append((namespace, service, port))
        return echo_server if (namespace, service) == (ns, "web") else None

    saved = server.service_resolver
    target.on_server(lambda: setattr(server, "service_resolver", resolver))
    try:
        answer = core.connect_get_namespaced_service_proxy_with_path(
            "web:http", ns, "v1/cert.pem")
        assert answer == PEM
        answer = core.connect_get_namespaced_service_proxy_with_path(
            "http:web:8080", ns, "x/y", _preload_content=False)
        assert json.loads(answer.data)["path"] == "/x/y"
        answer = core.connect_post_namespaced_service_proxy_with_path(
            "web", ns, "submit", _preload_content=False)
        assert json.loads(answer.data)["method"] == "POST"
        assert (ns, "web", "http") in asked and (ns, "web", "8080") in asked

        status, _, data = raw_request(
            target, "GET", f"/api/v1/namespaces/{ns}/services/web:http/proxy/q?a=1&b=2")
        assert status == 200 and json.loads(data)["path"] == "/q?a=1&b=2"

        # No ready endpoint: 503 with a Status.
        target.on_server(lambda: setattr(server, "service_resolver", lambda *a: None))
        with pytest.raises(client.ApiException) as caught:
            core.connect_get_namespaced_service_proxy_with_path("web:http", ns, "v1/cert.pem")
        assert caught.value.status == 503
        status = status_of(caught.value)
        assert status["reason"] == "ServiceUnavailable"
        assert status["message"] == 'no endpoints available for service "web"'
    finally:
        target.on_server(lambda: setattr(server, "service_resolver", saved))


def test_service_proxy_missing_service(core: client.CoreV1Api, ns: str) -> None:
    with pytest.raises(client.ApiException) as caught:
        core.connect_get_namespaced_service_proxy_with_path("absent:80", ns, "x")
    assert caught.value.status == 404
