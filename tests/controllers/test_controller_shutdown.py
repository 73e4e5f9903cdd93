"""Nothing outlives the controller manager: stop() ends every pod process (and what those
processes started in their group), and a pod process dies with a daemon that is SIGKILLed."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from controller_harness import (
    SLOW_TO_STOP,
    Sandbox,
    bare_pod,
    deployment,
    deployment_ready,
    living_in_groups,
    pid_alive,
    python_container,
    wait_for,
)

from runbook_lib.sandbox.controllers import process as pod_processes

pytestmark = pytest.mark.timeout(60)


def test_stop_leaves_no_process_behind(tmp_path):
    box = Sandbox(tmp_path, stop_grace_s=1.0)
    before = set(pod_processes.started_groups)
    pids = []
    try:
        box.start()
        box.core.create_namespace({"metadata": {"name": "work"}})
        # A pod whose shell starts a background child in the same group, plus one that
        # ignores SIGTERM (its grace period of 30 s is cut to the stop grace).
        forking = python_container("x", command=[
            "sh", "-c", ("python -c 'import time; time.sleep(300)' & echo child $! ; "
                         "exec python -c 'import os, time; print(\"pid\", os.getpid(), "
                         "flush=True); time.sleep(300)'")])
        box.core.create_namespaced_pod("work", bare_pod("forking", [forking]))
        box.core.create_namespaced_pod(
            "work", bare_pod("stubborn", [python_container(SLOW_TO_STOP)], grace_s=30))
        box.apps.create_namespaced_deployment("work", deployment("web", replicas=2))
        wait_for(lambda: deployment_ready(box, "work", "web", 2), timeout=10)
        for name in ("forking", "stubborn"):
            log = wait_for(lambda name=name: re.search(
                r"pid (\d+)", box.core.read_namespaced_pod_log(name, "work")), timeout=10)
            pids.append(int(log.group(1)))
        child = wait_for(lambda: re.search(r"child (\d+)",
                                           box.core.read_namespaced_pod_log("forking", "work")))
        pids.append(int(child.group(1)))
        assert all(pid_alive(pid) for pid in pids)
    finally:
        started = time.monotonic()
        box.stop()
        elapsed = time.monotonic() - started
    groups = set(pod_processes.started_groups) - before
    assert len(groups) >= 4
    assert not living_in_groups(groups)
    assert not [pid for pid in pids if pid_alive(pid)]
    assert elapsed < 6.0, elapsed


PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAEMON = """
import asyncio, sys
from pathlib import Path
from runbook_lib.sandbox.controllers.process import spawn

async def main():
    proc = await spawn([sys.executable, '-c', 'import time; time.sleep(300)'], Path('.'),
                       {}, Path(sys.argv[1]))
    print(proc.pid, flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
"""


def test_pod_process_dies_with_a_killed_daemon(tmp_path):
    daemon = subprocess.Popen([sys.executable, "-c", DAEMON, str(tmp_path / "log")],
                              stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
    try:
        pid = int(daemon.stdout.readline())
        assert pid_alive(pid)
        daemon.kill()
        daemon.wait(5)
        wait_for(lambda: not pid_alive(pid), timeout=5, what="the orphan to die")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(5)
