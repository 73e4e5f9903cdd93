"""The idle add-on: answers health checks on every mapped port, plain or TLS; stops on SIGTERM."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

from runbook_lib.sandbox.addons.idle import ports_from_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return response.status


def test_ports_from_env():
    env = {"PORT": "1000", "SANDBOX_PORT_8081": "1001", "SANDBOX_PORT_9443": "1000", "X": "5"}
    assert ports_from_env(env) == [1000, 1001]
    assert ports_from_env({"PORT": ""}) == []


def test_serves_http_and_https_and_stops_on_sigterm():
    first, second = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runbook_lib.sandbox.addons.idle"],
        env={"PORT": str(first), "SANDBOX_PORT_8081": str(second), "PATH": "/usr/bin:/bin"},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert _get(f"http://127.0.0.1:{first}/healthz") == 200
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert _get(f"http://127.0.0.1:{second}/readyz") == 200
        assert _get(f"https://127.0.0.1:{first}/readyz") == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_refuses_to_start_without_a_port():
    result = subprocess.run(
        [sys.executable, "-m", "runbook_lib.sandbox.addons.idle"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
