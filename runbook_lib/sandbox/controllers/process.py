"""Local processes for sandbox containers: start, stop, and local ports.

Every container process starts in its own session (so its process group can be signalled as
a whole, like a container's cgroup) and with ``PR_SET_PDEATHSIG`` set to SIGKILL, so it dies
with the daemon even when the daemon is killed outright. A grandchild that the container's
process forks keeps the group but not the death signal: :func:`stop_group` reaches it through
the group while the daemon lives, nothing does once the daemon is SIGKILLed.

Local ports are handed out by binding port 0 on 127.0.0.1 and remembering what was handed out,
so two pods never receive the same port from this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
from collections import deque
from pathlib import Path

log = logging.getLogger("runbook_lib.sandbox.controllers.process")

_PR_SET_PDEATHSIG = 1
_given_ports: set[int] = set()
# Every process group this module started and has not yet seen gone; stop() sweeps them.
live_groups: set[int] = set()
# The most recent groups started, gone or not: what a test checks after stop().
started_groups: deque[int] = deque(maxlen=10000)


def allocate_port() -> int:
    """A free TCP port on 127.0.0.1 not handed out before by this process."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _given_ports:
            _given_ports.add(port)
            return port
    raise OSError("no free local port found")


def claim_port(port: int) -> None:
    """Mark ``port`` as handed out (a pod that kept its mapping across a daemon restart)."""
    _given_ports.add(port)


def release_port(port: int) -> None:
    _given_ports.discard(port)


# Loaded once here: the child must not load libraries between fork and exec (a threaded
# parent may hold the loader's lock at the moment of the fork).
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


async def spawn(argv: list[str], cwd: Path, env: dict[str, str],
                log_path: Path) -> asyncio.subprocess.Process:
    """Start ``argv`` with stdout and stderr appended to ``log_path``, in a new process group."""
    with _open_log(log_path) as out:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    live_groups.add(proc.pid)
    started_groups.append(proc.pid)
    return proc


def _open_log(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab")


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def stop_group(proc: asyncio.subprocess.Process, grace_s: float) -> int:
    """SIGTERM the process group, wait up to ``grace_s``, then SIGKILL what is left."""
    if proc.returncode is None:
        signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=max(grace_s, 0.0))
        except TimeoutError:
            pass
    # The leader may be gone while others of its group still run: they go too.
    signal_group(proc.pid, signal.SIGKILL)
    code = await proc.wait()
    live_groups.discard(proc.pid)
    return code


def forget_group(pgid: int) -> None:
    """The leader exited on its own: kill any stragglers of its group, then stop tracking it."""
    signal_group(pgid, signal.SIGKILL)
    live_groups.discard(pgid)


def kill_all_groups() -> None:
    """Last resort at shutdown: SIGKILL every group still tracked."""
    for pgid in list(live_groups):
        signal_group(pgid, signal.SIGKILL)
    live_groups.clear()


def exit_code(returncode: int) -> int:
    """A container exit code: a death by signal N reads as 128 + N, as runtimes report it."""
    return 128 - returncode if returncode < 0 else returncode
