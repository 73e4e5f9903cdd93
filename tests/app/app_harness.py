"""Test harness for the sample DBOS app: embedded PostgreSQL and real app processes.

Used by ``conftest.py`` and the ``test_app_*`` modules of this folder, and by
``benchmarks/app_bench.py``. Processes are started the way the images say: the final
stage's ENTRYPOINT/CMD and WORKDIR are read from ``app/Dockerfile`` and
``app/Dockerfile.migrate`` and mapped into the build context through their COPY lines,
with this venv's ``python`` and ``dbos`` standing in for the image's.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[2]
APP_DIR = REPO / "app"
VENV_BIN = Path(sys.executable).parent
ADMIN_ROLE = "dbos_admin"
APP_ROLE = "dbos_app_role"

# Bytecode of the app's imports, kept outside the repo and the venv: the images ship
# compiled bytecode, so warm starts are the faithful ones.
PYCACHE_DIR = Path(tempfile.gettempdir()) / "dbos-app-pycache-py{}{}".format(*sys.version_info)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], object], timeout_s: float, what: str, interval_s=0.1):
    """Poll ``check`` until it returns something truthy; AssertionError after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


# -- the images' commands ------------------------------------------------------------------


@dataclass(frozen=True)
class ImageCommand:
    """What an image runs: argv (ENTRYPOINT + CMD) and the folder its WORKDIR maps to."""

    argv: list[str]
    workdir: Path
    env: dict[str, str]


def _final_stage(dockerfile: Path) -> list[str]:
    """The instructions of the last stage, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    return lines[starts[-1] :]


def image_command(dockerfile: Path) -> ImageCommand:
    """Read ENTRYPOINT, CMD, WORKDIR, ENV and COPY of the final stage of ``dockerfile``."""
    entrypoint: list[str] = []
    cmd: list[str] = []
    workdir = "/"
    copies: list[tuple[str, str]] = []
    env: dict[str, str] = {}
    for line in _final_stage(dockerfile):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif keyword == "CMD":
            cmd = json.loads(rest)
        elif keyword == "WORKDIR":
            workdir = rest.strip()
        elif keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
        elif keyword == "COPY" and "--from" not in rest:
            parts = shlex.split(rest)
            copies.append((parts[-2], parts[-1]))
    context = dockerfile.parent
    folder = None
    for source, dest in copies:
        if workdir.rstrip("/") == dest.rstrip("/"):
            folder = (context / source).resolve()
    if folder is None:
        raise AssertionError(f"{dockerfile.name}: WORKDIR {workdir} is filled by no COPY")
    argv = entrypoint + cmd
    local = {"python": sys.executable, "dbos": str(VENV_BIN / "dbos")}
    argv = [local.get(argv[0], argv[0]), *argv[1:]]
    return ImageCommand(argv=argv, workdir=folder, env=env)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment without DBOS settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    for name in ("QUEUE_NAME", "WORKER_CONCURRENCY", "PORT", "DRAIN_TIMEOUT_SECONDS"):
        env.pop(name, None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_migration(
    database_url: str | None, *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess:
    """Run the migration image's command with ``args`` (the Job's args)."""
    image = image_command(APP_DIR / "Dockerfile.migrate")
    extra = {} if database_url is None else {"DBOS_SYSTEM_DATABASE_URL": database_url}
    return subprocess.run(
        image.argv + list(args),
        check=False,
        cwd=image.workdir,
        env=child_env(extra),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def warm_bytecode() -> None:
    """Compile the app's imports once into PYCACHE_DIR, so app starts are warm."""
    subprocess.run(
        [sys.executable, "-c", "import api, uvicorn, dbos.cli.cli"],
        cwd=APP_DIR,
        env=child_env({}),
        check=True,
        capture_output=True,
        timeout=300,
    )


# -- PostgreSQL ------------------------------------------------------------------------------


def pg_url(role: str, password: str, database: str, socket_dir: Path) -> str:
    return f"postgresql://{role}:{quote(password)}@/{database}?host={quote(str(socket_dir))}"


@dataclass
class Postgres:
    """One embedded PostgreSQL server with an admin role (a database owner, not a
    superuser, as on RDS) and a restricted application role."""

    superuser_url: str
    socket_dir: Path
    admin_password: str = field(default_factory=lambda: "adm-" + secrets.token_hex(8))
    app_password: str = field(default_factory=lambda: "app-" + secrets.token_hex(8))

    @classmethod
    def from_server(cls, server) -> Postgres:
        info = server.get_postmaster_info()
        return cls(superuser_url=server.get_uri(), socket_dir=Path(info.socket_dir))

    def execute(self, *statements: str) -> None:
        with psycopg.connect(self.superuser_url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def create_roles(self) -> None:
        self.execute(
            f"CREATE ROLE {ADMIN_ROLE} LOGIN NOSUPERUSER PASSWORD '{self.admin_password}'",
            f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER PASSWORD '{self.app_password}'",
        )

    def create_database(self, template: str | None = None) -> Database:
        name = "t_" + uuid.uuid4().hex[:12]
        clause = f" TEMPLATE {template}" if template else ""
        self.execute(f"CREATE DATABASE {name}{clause} OWNER {ADMIN_ROLE}")
        return Database(self, name)

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class Database:
    """A database of the test server, with URLs for the admin and the app role."""

    server: Postgres
    name: str

    @property
    def admin_url(self) -> str:
        s = self.server
        return pg_url(ADMIN_ROLE, s.admin_password, self.name, s.socket_dir)

    @property
    def app_url(self) -> str:
        s = self.server
        return pg_url(APP_ROLE, s.app_password, self.name, s.socket_dir)

    def query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def statuses(self, workflow_ids: list[str]) -> dict[str, tuple[str, str]]:
        """workflow ID -> (status, executor ID), read from the DBOS system tables."""
        rows = self.query(
            "SELECT workflow_uuid, status, executor_id FROM dbos.workflow_status "
            "WHERE workflow_uuid = ANY(%s)",
            (workflow_ids,),
        )
        return {row[0]: (row[1], row[2]) for row in rows}


# -- app processes ---------------------------------------------------------------------------


class AppProcess:
    """One ``python main.py`` process, started like the app image, on a free port."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = int(env.get("PORT") or free_port())
        self.env = child_env({**env, "PORT": str(self.port)})
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> AppProcess:
        image = image_command(APP_DIR / "Dockerfile")
        with open(self.log_path, "w") as log:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                image.argv,
                cwd=image.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, timeout_s: float = 10.0, params: dict | None = None) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=timeout_s, params=params)

    def health(self) -> int | None:
        """The /healthz status code, or None when nothing answers."""
        try:
            return self.get("/healthz", timeout_s=2.0).status_code
        except httpx.HTTPError:
            return None

    def wait_healthy(self, timeout_s: float = 60.0) -> float:
        """Wait for /healthz 200; the seconds since start."""

        def healthy() -> bool:
            if not self.running():
                raise AssertionError(f"{self.name} exited early:\n{self.output()}")
            return self.health() == 200

        wait_until(healthy, timeout_s, f"{self.name} to become healthy", interval_s=0.05)
        return time.monotonic() - self.started_at

    def enqueue(self, seconds: float) -> str:
        response = self.get(f"/enqueue/{seconds}")
        assert response.status_code == 200, response.text
        return response.json()["workflow_id"]

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout_s: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        """Kill the process if it still runs; used at teardown."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""
