"""Container probes, really performed against the container's local process.

``httpGet`` (success is a status from 200 to 399), ``tcpSocket`` and ``exec`` probes are
supported; a ``grpc`` probe is not and always passes. Ports named or numbered in a probe are the
container's ports, reached through the pod's local port mapping. Each probe runs on its own
timer with the Kubernetes defaults (period 10 s, timeout 1 s, success threshold 1, failure
threshold 3, no initial delay). The pod worker decides what a result means: readiness flips the
container's ready flag, liveness and startup failures restart the container.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass

import aiohttp

log = logging.getLogger("runbook_lib.sandbox.controllers.probes")


@dataclass
class ProbeTiming:
    initial_delay_s: float
    period_s: float
    timeout_s: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def of(cls, probe: dict) -> ProbeTiming:
        return cls(
            initial_delay_s=float(probe.get("initialDelaySeconds") or 0),
            period_s=float(probe.get("periodSeconds") or 10),
            timeout_s=float(probe.get("timeoutSeconds") or 1),
            success_threshold=int(probe.get("successThreshold") or 1),
            failure_threshold=int(probe.get("failureThreshold") or 3),
        )


def probe_port(port: int | str | None, container: dict) -> int | None:
    """The container port a probe names (by number or by the container port's name)."""
    if port is None:
        return None
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for entry in container.get("ports") or []:
        if entry.get("name") == text:
            return entry.get("containerPort")
    return None


async def http_probe(session: aiohttp.ClientSession, spec: dict, local_port: int,
                     timeout_s: float) -> tuple[bool, str]:
    scheme = (spec.get("scheme") or "HTTP").lower()
    path = spec.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://127.0.0.1:{local_port}{path}"
    headers = {h.get("name", ""): h.get("value", "") for h in spec.get("httpHeaders") or []}
    headers.setdefault("User-Agent", "kube-probe/1.31")
    try:
        async with session.get(url, headers=headers, ssl=False,
                               timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            await resp.read()
            if 200 <= resp.status < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {resp.status}"
    except TimeoutError:
        return False, (f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while '
                       "awaiting headers)")
    except aiohttp.ClientConnectorError:
        return False, f'Get "{url}": dial tcp 127.0.0.1:{local_port}: connect: connection refused'
    except aiohttp.ClientError as exc:
        return False, f'Get "{url}": {type(exc).__name__}'


async def tcp_probe(local_port: int, timeout_s: float) -> tuple[bool, str]:
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", local_port), timeout_s)
        writer.close()
        return True, ""
    except (TimeoutError, OSError):
        return False, f"dial tcp 127.0.0.1:{local_port}: connect: connection refused"


async def exec_probe(argv: list[str], cwd: str, env: dict[str, str],
                     timeout_s: float) -> tuple[bool, str]:
    from runbook_lib.sandbox.controllers.process import _die_with_parent

    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        return False, f"exec failed: {exc.strerror}"
    try:
        await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await proc.wait()
        return False, f"command timed out after {timeout_s:g}s"
    if proc.returncode == 0:
        return True, ""
    # The command's output is not repeated: it could print anything, secrets included.
    return False, f"command exited with code {proc.returncode}"
