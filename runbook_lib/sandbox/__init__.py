"""The sandbox target: AWS and a Kubernetes cluster played on this machine.

Used by the CLI, the chain runner (through ``runbook_lib.sandbox.target``) and the tests:

- :func:`up` starts the sandbox daemon (``python -m runbook_lib.sandbox.daemon``) detached and
  returns once every part answers; if it already runs and answers, it returns its info;
- :func:`status` says whether it runs, and where;
- :func:`down` stops it and checks that nothing it started is left running or listening;
- :func:`env` gives the environment that points unmodified tools (boto3, kubectl) at it.

Only this package knows it is a sandbox; stage code never asks. The daemon's own docstring
describes what runs inside; this module only starts, finds and stops it. A sandbox lives in one
directory (:func:`default_directory`): its state file, kubeconfig, log, image registry and the
data of its databases.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from runbook_lib.errors import TargetError

log = logging.getLogger("runbook_lib.sandbox")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DIR_ENV = "RUNBOOK_SANDBOX_DIR"
STATE_FILE = "state.json"
LOG_FILE = "daemon.log"
LOCK_FILE = ".lock"
INSTANCE_ENV = "RUNBOOK_SANDBOX_INSTANCE"

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 45.0  # pods get their grace period inside this
KILL_WAIT_S = 15.0

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}

_NOT_INHERITED = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ENDPOINT_URL",
    "KUBECONFIG",
}

# Popen objects of daemons this process started, so their exit status is collected.
_children: dict[int, subprocess.Popen] = {}


@dataclass
class SandboxInfo:
    """Where a running sandbox is and what it serves."""

    directory: Path
    pid: int
    kube_url: str
    kubeconfig: Path
    aws_endpoint_url: str
    started_at: str
    rds: dict[str, dict[str, str]] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    supervisor_pid: int = 0
    region: str = "us-west-2"
    account_id: str = "123456789012"
    ready_s: float | None = None
    ports: list[int] = field(default_factory=list)
    instance: str = ""

    @property
    def log_path(self) -> Path:
        return self.directory / LOG_FILE

    def describe(self) -> list[str]:
        """Human lines for the record: what plays what in this sandbox."""
        lines = [
            f"sandbox daemon pid {self.pid} in {self.directory}, started {self.started_at}",
            f"Kubernetes API server at {self.kube_url} (kubeconfig {self.kubeconfig})",
            (
                f"AWS APIs are served by moto at {self.aws_endpoint_url} "
                f"(account {self.account_id}, region {self.region}, fake credentials)"
            ),
        ]
        for instance, entry in sorted(self.rds.items()):
            lines.append(
                f"RDS instance {instance}: endpoint {entry.get('endpoint')} is served by "
                f"embedded PostgreSQL at {entry.get('local')}"
            )
        for image, digest in sorted(self.images.items()):
            lines.append(f"image {image} ({digest[:19]}) runs from its build context")
        return lines

    @classmethod
    def from_state(cls, state: dict, directory: Path) -> SandboxInfo:
        return cls(
            directory=directory,
            pid=int(state["pid"]),
            kube_url=state["kube_url"],
            kubeconfig=Path(state["kubeconfig"]),
            aws_endpoint_url=state["aws_endpoint_url"],
            started_at=state.get("started_at", ""),
            rds={k: dict(v) for k, v in (state.get("rds") or {}).items()},
            images=_images(directory),
            supervisor_pid=int(state.get("supervisor_pid") or 0),
            region=state.get("region", "us-west-2"),
            account_id=state.get("account_id", "123456789012"),
            ready_s=state.get("ready_s"),
            ports=[int(p) for p in state.get("ports") or []],
            instance=state.get("instance", ""),
        )


def default_directory() -> Path:
    """``$RUNBOOK_SANDBOX_DIR``, else ``.sandbox/`` at the project root."""
    configured = os.environ.get(DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return PROJECT_ROOT / ".sandbox"


def env(info: SandboxInfo) -> dict[str, str]:
    """Environment variables that point boto3, the AWS CLI and kubectl at the sandbox."""
    return {
        "KUBECONFIG": str(info.kubeconfig),
        "AWS_ENDPOINT_URL": info.aws_endpoint_url,
        **FAKE_CREDENTIALS,
        "AWS_DEFAULT_REGION": info.region,
        "AWS_REGION": info.region,
    }


# ---------------------------------------------------------------------------------------------
# status


def status(directory: Path | None = None) -> SandboxInfo | None:
    """The running sandbox in ``directory``, or None when none runs there."""
    directory = _dir(directory)
    state = _read_state(directory)
    if state is None or not _is_daemon(int(state.get("pid") or 0)):
        return None
    return SandboxInfo.from_state(state, directory)


# ---------------------------------------------------------------------------------------------
# up


def up(directory: Path | None = None) -> SandboxInfo:
    """Start the sandbox in ``directory`` (or return the one already running there).

    Returns once the Kubernetes API, moto and the controllers answer. Raises TargetError with
    the end of the daemon's log when the daemon does not come up.
    """
    directory = _dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Other users (the PostgreSQL server's, when we are root) must be able to pass through.
    with contextlib.suppress(PermissionError):
        directory.chmod(0o711)
    with _locked(directory):
        running = status(directory)
        if running is not None:
            if _answers(running):
                log.debug("sandbox already running (pid %d)", running.pid)
                return running
            log.warning("sandbox pid %d does not answer; restarting it", running.pid)
            _stop(directory, _read_state(directory) or {})
        elif _read_state(directory) is not None:
            # A state file without a daemon: the daemon died; clear what it may have left.
            _stop(directory, _read_state(directory) or {})
        return _start(directory)


def _start(directory: Path) -> SandboxInfo:
    started = time.monotonic()
    instance = uuid.uuid4().hex
    # The daemon needs no credentials: real ones stay out of it and of what it starts.
    child_env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    child_env[INSTANCE_ENV] = instance
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(PROJECT_ROOT)] + ([child_env["PYTHONPATH"]] if child_env.get("PYTHONPATH") else [])
    )
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    with open(directory / LOG_FILE, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runbook_lib.sandbox.daemon", "--dir", str(directory)],
            cwd=str(directory),
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    log.info("sandbox daemon starting (pid %d) in %s", proc.pid, directory)

    # Wait for the worker's state file, or for the daemon to give up.
    deadline = started + START_TIMEOUT_S
    while True:
        state = _read_state(directory)
        if state and int(state.get("supervisor_pid") or 0) == proc.pid:
            break
        if proc.poll() is not None:
            raise TargetError(
                f"the sandbox daemon exited with code {proc.returncode} while starting; "
                f"end of {directory / LOG_FILE}:\n{_log_tail(directory)}"
            )
        if time.monotonic() > deadline:
            _stop(directory, {"supervisor_pid": proc.pid})
            raise TargetError(
                f"the sandbox did not come up within {START_TIMEOUT_S:g} s; "
                f"end of {directory / LOG_FILE}:\n{_log_tail(directory)}"
            )
        time.sleep(0.02)

    info = SandboxInfo.from_state(state, directory)
    if not _answers(info):
        _stop(directory, state)
        raise TargetError(f"the sandbox started but does not answer; see {info.log_path}")
    log.info("sandbox up in %.2f s", time.monotonic() - started)
    return info


def _answers(info: SandboxInfo) -> bool:
    """True when the Kubernetes API and moto both answer HTTP."""
    return _http_ok(info.kube_url.rstrip("/") + "/version") and _http_ok(
        info.aws_endpoint_url.rstrip("/") + "/moto-api/"
    )


def _http_ok(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# down


def down(directory: Path | None = None) -> bool:
    """Stop the sandbox in ``directory``; False when there was nothing to stop.

    SIGTERM, then SIGKILL after a limit; then check that none of its processes is left and
    that none of its ports still listens, and remove the state file. Raises TargetError when
    something survives.
    """
    directory = _dir(directory)
    if not directory.exists():
        return False
    with _locked(directory):
        state = _read_state(directory)
        if state is None:
            _reap_children()
            return False
        _stop(directory, state)
        return True


def _stop(directory: Path, state: dict) -> None:
    pid = int(state.get("pid") or 0)
    supervisor = int(state.get("supervisor_pid") or 0)
    ports = [int(p) for p in state.get("ports") or []]
    instance = state.get("instance") or ""

    # Only processes that are this sandbox's daemons get signals (a pid may have been reused).
    worker = pid if _is_daemon(pid) else 0
    keeper = supervisor if _is_daemon(supervisor) else 0
    daemons = [p for p in (worker, keeper) if p]

    # The worker stops its parts in order; the supervisor then exits.
    if daemons:
        _signal(worker or keeper, signal.SIGTERM)
    if not _wait_gone(daemons, STOP_TIMEOUT_S):
        log.warning("sandbox did not stop within %g s; killing it", STOP_TIMEOUT_S)
        if worker:
            _signal(worker, signal.SIGKILL)
        # The supervisor stops what the worker left, then exits.
        if not _wait_gone(daemons, KILL_WAIT_S) and keeper:
            _signal(keeper, signal.SIGKILL)
            _wait_gone(daemons, 5)

    # Nothing of it may be left: no process, no listening port.
    survivors = _leftover_processes(instance, daemons)
    for proc in survivors:
        with contextlib.suppress(Exception):
            log.warning("killing leftover sandbox process %d (%s)", proc.pid, proc.name())
            proc.kill()
    listening = _our_listeners(ports, instance)
    if listening:
        time.sleep(1.0)
        listening = _our_listeners(ports, instance)
    still = [p.pid for p in _leftover_processes(instance, daemons)]
    if still or listening:
        raise TargetError(
            f"the sandbox in {directory} did not stop cleanly: processes {still or 'none'}, "
            f"ports still listening {listening or 'none'}"
        )
    with contextlib.suppress(FileNotFoundError):
        (directory / STATE_FILE).unlink()
    log.info("sandbox in %s stopped", directory)


def _our_listeners(ports: list[int], instance: str) -> list[int]:
    """The ports of ``ports`` that still listen, unless another program has taken them since."""
    import psutil

    listening = [p for p in ports if _listening(p)]
    if not listening:
        return []
    try:
        owners = {
            c.laddr.port: c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in listening
        }
    except psutil.Error:
        return listening
    ours = []
    for port in listening:
        pid = owners.get(port)
        if pid is None:
            ours.append(port)  # cannot tell: assume it is ours
            continue
        try:
            if psutil.Process(pid).environ().get(INSTANCE_ENV) == instance or _is_daemon(pid):
                ours.append(port)
        except psutil.Error:
            ours.append(port)
    return ours


def _leftover_processes(instance: str, pids: list[int]) -> list:
    """Processes of this sandbox still alive: its daemons, and anything carrying its mark."""
    import psutil

    found = []
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
    if instance:
        me = os.getpid()
        for proc in psutil.process_iter(["pid"]):
            if proc.pid == me or proc.pid in pids:
                continue
            try:
                marked = proc.environ().get(INSTANCE_ENV) == instance
                if marked and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.Error:
                continue
    return found


# ---------------------------------------------------------------------------------------------
# helpers


def _dir(directory: Path | None) -> Path:
    return Path(directory).expanduser().resolve() if directory else default_directory()


def _read_state(directory: Path) -> dict | None:
    try:
        return json.loads((directory / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _images(directory: Path) -> dict[str, str]:
    try:
        data = json.loads((directory / "images.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {e.get("image", k): e.get("digest", "") for k, e in data.get("images", {}).items()}


@contextlib.contextmanager
def _locked(directory: Path):
    """One up/down at a time per sandbox directory, across processes."""
    with open(directory / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _reap_children() -> None:
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            _children.pop(pid, None)


def _alive(pid: int) -> bool:
    """True for a live process (a zombie, or nothing, is not alive)."""
    if pid <= 0:
        return False
    _reap_children()
    try:
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:  # noqa: BLE001 - psutil.NoSuchProcess and friends: not alive
        return False


def _is_daemon(pid: int) -> bool:
    """True when ``pid`` is alive and is a sandbox daemon (not a reused pid)."""
    if not _alive(pid):
        return False
    try:
        import psutil

        return "runbook_lib.sandbox.daemon" in " ".join(psutil.Process(pid).cmdline())
    except Exception:  # noqa: BLE001 - gone meanwhile
        return False


def _signal(pid: int, sig: int) -> None:
    if pid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return not any(_alive(p) for p in pids)


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _log_tail(directory: Path, lines: int = 30) -> str:
    try:
        text = (directory / LOG_FILE).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text[-lines:])
