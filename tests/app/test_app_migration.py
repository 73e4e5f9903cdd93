"""Privilege separation: `dbos migrate --app-role` as the admin, the app as the restricted
role, run the way the migration image and the app image run them."""

from __future__ import annotations

import psycopg
import pytest
from app_harness import APP_DIR, run_migration, wait_until


def test_migration_then_restricted_app(first_migration, fresh_db, start_app):
    """The session's first migration ran on an empty database; this test checks its
    output, then works on a copy of the database it produced."""
    server = fresh_db.server
    rolsuper = fresh_db.query("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    assert rolsuper == [(False,)], "the admin must be a plain database owner, as on RDS"

    # First run: created the schema and granted the app role; the password never shows.
    output = first_migration.stdout + first_migration.stderr
    assert "Applying DBOS system database schema migration" in output
    assert 'GRANT USAGE ON SCHEMA "dbos" TO "dbos_app_role"' in output
    assert "***" in output and server.admin_password not in output

    # The app, as the restricted role, launches and runs a workflow.
    app = start_app("pod-restricted", fresh_db)
    app.wait_healthy()
    workflow_id = app.enqueue(0.2)
    wait_until(
        lambda: fresh_db.statuses([workflow_id])[workflow_id][0] == "SUCCESS",
        20,
        "the workflow to succeed",
    )
    assert server.app_password not in app.output()

    # The restricted role can use the tables but cannot change the schema.
    forbidden = {
        "CREATE": "CREATE TABLE dbos.intruder (id int)",
        "CREATE SCHEMA": "CREATE SCHEMA intruder",
        "ALTER": "ALTER TABLE dbos.workflow_status ADD COLUMN intruder int",
        "DROP": "DROP TABLE dbos.workflow_status",
    }
    with psycopg.connect(fresh_db.app_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone()[0] == 1
        for action, statement in forbidden.items():
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as error:
                conn.execute(statement)
            message = str(error.value)
            assert "permission denied" in message or "must be owner" in message, action

    # Re-running is idempotent: no migration applied, the grants re-applied.
    second = run_migration(fresh_db.admin_url, "migrate", "--app-role", "dbos_app_role")
    output = second.stdout + second.stderr
    assert second.returncode == 0, output
    assert "Applying DBOS system database schema migration" not in output
    assert 'GRANT USAGE ON SCHEMA "dbos" TO "dbos_app_role"' in output
    assert server.admin_password not in output
    assert app.health() == 200


def test_migration_without_a_database_url_fails():
    """An unset variable must fail the Job, never migrate a local SQLite file."""
    result = run_migration(None, "migrate", "--app-role", "dbos_app_role")
    assert result.returncode != 0
    assert not list((APP_DIR / "migrate").glob("*.sqlite"))
