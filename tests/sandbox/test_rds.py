"""RDS instances created through moto are real PostgreSQL servers, reachable the sandbox's way."""

from __future__ import annotations

import time

import boto3
import psycopg
import pytest

from runbook_lib import sandbox
from runbook_lib.sandbox.network import Network

from .support import listening, pid_alive

PASSWORD = "s3cr:t/p@ss w0rd?#"  # characters that URLs and shells care about


def _rds(info):
    return boto3.client(
        "rds", endpoint_url=info.aws_endpoint_url, region_name=info.region,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def _connect(local: str, password: str, dbname: str = "postgres", **kw):
    host, port = local.rsplit(":", 1)
    return psycopg.connect(
        host=host, port=int(port), user="postgres", password=password, dbname=dbname,
        connect_timeout=5, **kw,
    )  # fmt: skip


def test_create_connect_modify_delete(shared_sandbox):
    info = shared_sandbox
    rds = _rds(info)
    started = time.monotonic()
    created = rds.create_db_instance(
        DBInstanceIdentifier="dbos-app-pg", DBInstanceClass="db.t4g.micro", Engine="postgres",
        EngineVersion="16", MasterUsername="postgres", MasterUserPassword=PASSWORD,
        AllocatedStorage=20, DBName="dbos_app",
    )["DBInstance"]  # fmt: skip
    print(f"create_db_instance took {time.monotonic() - started:.2f} s")
    endpoint = created["Endpoint"]
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier="dbos-app-pg")

    # The mapping is in the state the notebook reads, and in the record's lines.
    info = sandbox.status(info.directory)
    entry = info.rds["dbos-app-pg"]
    assert entry["endpoint"] == f"{endpoint['Address']}:{endpoint['Port']}"
    local = entry["local"]
    assert any(
        f"endpoint {entry['endpoint']} is served by embedded PostgreSQL at {local}" in line
        for line in info.describe()
    )

    # Right away, with the master password, over TLS (as RDS clients ask) and without.
    with _connect(local, PASSWORD, "dbos_app", sslmode="require") as conn:
        row = conn.execute("select current_user, current_database()").fetchone()
        assert row == ("postgres", "dbos_app")
        assert conn.pgconn.ssl_in_use
    with _connect(local, PASSWORD, sslmode="disable") as conn:
        assert conn.execute("select 1").fetchone() == (1,)

    # A URL a pod would get, rewritten the way the kubelet does it.
    net = Network()
    net.add(endpoint["Address"], endpoint["Port"], *local.rsplit(":", 1))
    url = f"postgresql://postgres:{_quote(PASSWORD)}@{endpoint['Address']}:5432/dbos_app"
    with psycopg.connect(net.rewrite(url + "?sslmode=require"), connect_timeout=5) as conn:
        assert conn.execute("select 1").fetchone() == (1,)

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(local, "wrong-password")

    # A new master password replaces the old one.
    rds.modify_db_instance(
        DBInstanceIdentifier="dbos-app-pg", MasterUserPassword="another-one", ApplyImmediately=True
    )
    with _connect(local, "another-one") as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError):
        _connect(local, PASSWORD)

    # Delete: the server stops and its address is gone.
    server_pid = int(entry["server_pid"])
    rds.delete_db_instance(DBInstanceIdentifier="dbos-app-pg", SkipFinalSnapshot=True)
    assert not pid_alive(server_pid)
    assert not listening(int(local.rsplit(":", 1)[1]))
    assert "dbos-app-pg" not in sandbox.status(info.directory).rds


def test_password_never_in_the_logs(shared_sandbox):
    info = shared_sandbox
    rds = _rds(info)
    rds.create_db_instance(
        DBInstanceIdentifier="logcheck", DBInstanceClass="db.t4g.micro", Engine="postgres",
        MasterUsername="admin_user", MasterUserPassword="never-log-this-1234",
        AllocatedStorage=20,
    )  # fmt: skip
    try:
        local = sandbox.status(info.directory).rds["logcheck"]["local"]
        with pytest.raises(psycopg.OperationalError):
            _connect(local, "wrong")
    finally:
        rds.delete_db_instance(DBInstanceIdentifier="logcheck", SkipFinalSnapshot=True)
    texts = [info.log_path.read_text(errors="replace")]
    texts += [p.read_text(errors="replace") for p in info.directory.rglob("*.log")]
    assert not any("never-log-this-1234" in t for t in texts)
    assert "never-log-this-1234" not in (info.directory / "state.json").read_text()


def test_other_engines_stay_api_only(shared_sandbox):
    rds = _rds(shared_sandbox)
    rds.create_db_instance(
        DBInstanceIdentifier="mysql-one", DBInstanceClass="db.t4g.micro", Engine="mysql",
        MasterUsername="admin", MasterUserPassword="password123", AllocatedStorage=20,
    )  # fmt: skip
    try:
        assert "mysql-one" not in sandbox.status(shared_sandbox.directory).rds
    finally:
        rds.delete_db_instance(DBInstanceIdentifier="mysql-one", SkipFinalSnapshot=True)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")
