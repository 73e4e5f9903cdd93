"""Helpers for the sandbox tests: start sandboxes, stop them all, check nothing is left."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path

from runbook_lib import sandbox


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _new_dir() -> Path:
    # Under /tmp itself (not pytest's private tree), as a project's .sandbox/ would be.
    return Path(tempfile.mkdtemp(prefix="sandbox-test-"))


class Sandboxes:
    """Starts sandboxes for a test and stops every one of them afterwards."""

    def __init__(self) -> None:
        self.started: list[tuple[Path, sandbox.SandboxInfo]] = []
        self.dirs: list[Path] = []

    def directory(self) -> Path:
        d = _new_dir()
        self.dirs.append(d)
        return d

    def up(self, directory: Path | None = None) -> sandbox.SandboxInfo:
        directory = directory or self.directory()
        t = time.monotonic()
        info = sandbox.up(directory)
        print(f"sandbox.up took {time.monotonic() - t:.2f} s (daemon ready in {info.ready_s} s)")
        self.started.append((directory, info))
        return info

    def close(self) -> None:
        problems = []
        for directory, info in self.started:
            try:
                sandbox.down(directory)
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                problems.append(f"down({directory}): {exc}")
            assert_nothing_left(info, problems)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        assert not problems, problems


def assert_nothing_left(info: sandbox.SandboxInfo, problems: list[str] | None = None) -> None:
    found = []
    for pid in (info.pid, info.supervisor_pid):
        if pid_alive(pid):
            found.append(f"pid {pid} still running")
    state = sandbox._read_state(info.directory) or {}
    ports = set(info.ports) | {int(p) for p in state.get("ports", [])}
    for entry in info.rds.values():
        ports.add(int(entry["local"].rsplit(":", 1)[1]))
    for port in sorted(ports):
        if listening(port):
            found.append(f"port {port} still listening")
    if problems is None:
        assert not found, found
    else:
        problems.extend(found)
