"""Fixtures for the KEDA operator's end-to-end tests: a real sandbox API server, a queue-depth
endpoint the test controls, and the operator itself as a subprocess.

The API server runs in-process on its own event loop in a background thread, so a test can
install a ``service_resolver`` for the service proxy and talk to it over plain HTTP like any
client. Everything a fixture starts is stopped in its teardown, also when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_kubeapi():
    """The sandbox API server module, or a skip naming what is missing."""
    try:
        from runbook_lib.sandbox import kubeapi
    except ImportError as exc:
        pytest.skip(f"runbook_lib.sandbox.kubeapi is not importable yet: {exc}")
    missing = [name for name in ("ServerThread", "write_kubeconfig") if not hasattr(kubeapi, name)]
    if missing:
        pytest.skip(f"runbook_lib.sandbox.kubeapi lacks {', '.join(missing)} so far")
    return kubeapi


class QueueEndpoint:
    """A tiny HTTP server answering ``{"queue_length": N}``; the test sets N or an error code."""

    def __init__(self):
        self.queue_length = 0
        self.status = 200
        self.paths: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                endpoint.paths.append(self.path)
                body = json.dumps({"queue_length": endpoint.queue_length}).encode()
                if endpoint.status != 200:
                    body = b'{"error": "unavailable"}'
                self.send_response(endpoint.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class OperatorProcess:
    """``python -m runbook_lib.sandbox.addons.keda`` with its stdout lines collected."""

    def __init__(self, kubeconfig: Path, log_path: Path, sync_period_s: float = 1.0):
        self.port = free_port()
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PORT": str(self.port),
               "HPA_SYNC_PERIOD_SECONDS": str(sync_period_s), "PYTHONUNBUFFERED": "1"}
        self.stderr = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runbook_lib.sandbox.addons.keda"], cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=self.stderr)
        self.lines: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                self.lines.append(json.loads(raw))
            except ValueError:
                self.lines.append({"unparsed": raw.decode(errors="replace")})

    def wait_healthy(self, timeout_s: float = 10.0) -> float:
        """Seconds from start until ``/healthz`` answered 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the operator exited at startup"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code \
                        == 200:
                    return time.monotonic() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("the operator never answered /healthz")

    def terminate(self, timeout_s: float = 10.0) -> int:
        """SIGTERM and wait; the exit code (killed processes fail the caller's assertion)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return -9
        return self.proc.returncode

    def stop(self) -> None:
        self.terminate()
        self.reader.join(timeout=5)
        self.stderr.close()


@pytest.fixture
def queue_endpoint():
    endpoint = QueueEndpoint()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def cluster(tmp_path, queue_endpoint):
    """A fresh API server with a service resolver for ``queue.demo:8080`` → the endpoint, a
    kubeconfig for it, and an HTTP client."""
    kubeapi = load_kubeapi()

    def resolver(namespace: str, service: str, port: str | None) -> str | None:
        if (namespace, service, port) == ("demo", "queue", "8080"):
            return queue_endpoint.url
        return None

    thread = kubeapi.ServerThread("127.0.0.1", 0)
    try:
        server = thread.start()
        server.service_resolver = resolver
        kubeconfig = tmp_path / "kubeconfig"
        kubeapi.write_kubeconfig(kubeconfig, server.url)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield client, kubeconfig
    finally:
        thread.stop()


@pytest.fixture
def operator_factory(tmp_path):
    started: list[OperatorProcess] = []

    def start(kubeconfig: Path) -> OperatorProcess:
        proc = OperatorProcess(kubeconfig, tmp_path / f"operator-{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
