"""The app refuses a configuration it cannot run with: clear one-line errors, no secrets."""

from __future__ import annotations

import subprocess
import sys

from app_harness import APP_DIR, child_env, free_port


def run_app(env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "main.py"],
        check=False,
        cwd=APP_DIR,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_missing_database_url_exits_with_a_clear_message():
    result = run_app({"DBOS__VMID": "pod-x"})
    assert result.returncode == 2
    assert "DBOS_SYSTEM_DATABASE_URL is not set" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(APP_DIR.glob("*.sqlite"))


def test_non_postgres_url_is_refused_without_echoing_it():
    secret = "s3cret-value"
    result = run_app({"DBOS_SYSTEM_DATABASE_URL": f"sqlite:///tmp/{secret}.db"})
    assert result.returncode == 2
    assert "postgresql://" in result.stderr
    assert secret not in result.stderr + result.stdout


def test_conductor_key_without_the_enterprise_extra(empty_db):
    key = "conductor-key-" + "x" * 12
    result = run_app(
        {
            "DBOS_SYSTEM_DATABASE_URL": empty_db.app_url,
            "DBOS_CONDUCTOR_KEY": key,
            "DBOS_CONDUCTOR_URL": "ws://127.0.0.1:9/conductor",
        }
    )
    assert result.returncode == 2
    message = result.stderr
    assert "dbos-enterprise" in message and "not installed" in message
    assert "3.3.0" in message and "3.4.0" in message
    assert key not in message + result.stdout
    assert empty_db.server.app_password not in message + result.stdout


def test_unmigrated_database_fails_launch_clearly(empty_db):
    """The app never migrates (restricted role): an empty database stops it at launch."""
    result = run_app({"DBOS_SYSTEM_DATABASE_URL": empty_db.app_url, "PORT": str(free_port())})
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "DBOS failed to start" in output
    assert "schema" in output.lower()
    assert empty_db.server.app_password not in output
