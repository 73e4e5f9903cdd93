"""How long the sandbox takes to come up and to go down on this machine.

Runs ``runbook_lib.sandbox.up`` and ``down`` a few times in a throw-away directory and prints
each time, the median, and the machine's load (other work on a 2-core machine shows up here).
Usage: ``.venv/bin/python benchmarks/sandbox_up.py [--runs N] [--warmup]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from runbook_lib import sandbox


def _cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far: on a busy machine, what it would take when idle."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup", action="store_true", help="let the daemon import moto's services after ready"
    )
    args = parser.parse_args()
    if not args.warmup:
        os.environ["RUNBOOK_SANDBOX_WARMUP"] = "0"

    ups, readies, downs, cpus = [], [], [], []
    directory = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    try:
        for run in range(1, args.runs + 1):
            load = os.getloadavg()[0]
            started = time.monotonic()
            info = sandbox.up(directory)
            up_s = time.monotonic() - started
            cpu_s = _cpu_seconds(info.pid) + _cpu_seconds(info.supervisor_pid)
            started = time.monotonic()
            sandbox.down(directory)
            down_s = time.monotonic() - started
            ups.append(up_s)
            cpus.append(cpu_s)
            readies.append(info.ready_s or 0.0)
            downs.append(down_s)
            print(
                f"run {run}: up {up_s:.2f} s (daemon ready after {info.ready_s:.2f} s, "
                f"{cpu_s:.2f} s of CPU), down {down_s:.2f} s, load before {load:.2f}"
            )
    finally:
        if sandbox.status(directory) is not None:
            sandbox.down(directory)
        shutil.rmtree(directory, ignore_errors=True)
    print(
        f"median of {args.runs}: up {statistics.median(ups):.2f} s, daemon ready "
        f"{statistics.median(readies):.2f} s, daemon CPU {statistics.median(cpus):.2f} s, "
        f"down {statistics.median(downs):.2f} s ({os.cpu_count()} CPUs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
