"""A pod process that only answers health checks: ``python -m runbook_lib.sandbox.addons.idle``.

The sandbox has nothing to do for some of the images a chart installs: KEDA's metrics API server
(the KEDA add-on serves what the runbook needs from the operator's process) and its admission
webhooks. The image registry (``runbook_lib.sandbox.images``) maps those images to this module,
so their Deployments run, become ready and can be inspected like the real ones.

It answers 200 to every GET on ``PORT`` and on every ``SANDBOX_PORT_<n>`` the kubelet maps for
the pod (so probes on any declared port succeed), over plain HTTP or TLS (sniffed per connection,
with a throw-away self-signed certificate: KEDA's metrics server is probed over HTTPS), and exits
on SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
from pathlib import Path

log = logging.getLogger("runbook_lib.sandbox.addons.idle")

TLS_HANDSHAKE = 0x16
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
    b"Connection: close\r\n\r\nok\n"
)


def ports_from_env(environ: dict[str, str]) -> list[int]:
    """``PORT`` and every ``SANDBOX_PORT_<n>`` value, without duplicates."""
    ports = []
    for key, value in sorted(environ.items()):
        wanted = key == "PORT" or key.startswith("SANDBOX_PORT_")
        if wanted and value.isdigit() and int(value) not in ports:
            ports.append(int(value))
    return ports


class _Tls:
    """A server TLS context, made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = _self_signed()
            return self._context


def _self_signed() -> ssl.SSLContext:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory() as tmp:
        key_path = Path(tmp) / "tls.key"
        cert_path = Path(tmp) / "tls.crt"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
    return context


def _handle(conn: socket.socket, tls: _Tls) -> None:
    try:
        conn.settimeout(10)
        first = conn.recv(1, socket.MSG_PEEK)
        if first and first[0] == TLS_HANDSHAKE:
            conn = tls.context().wrap_socket(conn, server_side=True)
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            request += chunk
        if request:
            conn.sendall(RESPONSE)
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def _serve(listener: socket.socket, tls: _Tls) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_handle, args=(conn, tls), daemon=True).start()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    ports = ports_from_env(dict(os.environ))
    if not ports:
        log.error("PORT is not set")
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    tls = _Tls()
    listeners = []
    for port in ports:
        listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        listeners.append(listener)
        threading.Thread(target=_serve, args=(listener, tls), daemon=True).start()
    log.info("idle add-on answering health checks on 127.0.0.1 ports %s", ports)

    stop.wait()
    for listener in listeners:
        listener.close()
    log.info("idle add-on stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
