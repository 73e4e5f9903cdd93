"""The sandbox's name map and the rewrite the kubelet applies to pod env, command and args."""

from __future__ import annotations

import pytest

from runbook_lib.sandbox.network import Network

RDS = "dbos-app-pg.aaaaaaaaaa.us-west-2.rds.amazonaws.com"


@pytest.fixture
def net() -> Network:
    n = Network()
    n.add(RDS, 5432, "127.0.0.1", 40001)
    return n


def test_resolve_static_entry_case_insensitive(net):
    assert net.resolve(RDS, 5432) == ("127.0.0.1", 40001)
    assert net.resolve(RDS.upper(), 5432) == ("127.0.0.1", 40001)
    assert net.resolve(RDS + ".", 5432) == ("127.0.0.1", 40001)
    assert net.resolve(RDS, 5433) is None


def test_remove(net):
    net.remove(RDS, 5432)
    net.remove(RDS, 5432)  # no error the second time
    assert net.resolve(RDS, 5432) is None
    assert net.entries() == {}


def test_postgres_url_with_query_string(net):
    url = f"postgresql://postgres:secret@{RDS}:5432/dbos_app?sslmode=require&x=1"
    assert (
        net.rewrite(url)
        == "postgresql://postgres:secret@127.0.0.1:40001/dbos_app?sslmode=require&x=1"
    )


@pytest.mark.parametrize(
    "password",
    [
        "p@ss:w0rd",
        "a%40b%3Ac",
        "with spaces & 'quotes' \"too\"",
        f"{RDS}:5432",  # a password that looks like the endpoint
        "ü€/?#[]!$&()*+,;=",
    ],
)
def test_passwords_are_never_touched(net, password):
    url = f"postgresql://postgres:{password}@{RDS}:5432/db"
    out = net.rewrite(url)
    assert out.endswith("@127.0.0.1:40001/db")
    assert out.startswith(f"postgresql://postgres:{password}@")


def test_user_and_password_shaped_like_host_port_before_at(net):
    # "user:password@" where the pair looks like the endpoint: not a host.
    text = f"{RDS}:5432@{RDS}:5432"
    assert net.rewrite(text) == f"{RDS}:5432@127.0.0.1:40001"


@pytest.mark.parametrize(
    "text",
    [
        f"x{RDS}:5432",  # a longer name that ends like ours
        f"sub.{RDS}:5432",  # a subdomain of ours
        f"{RDS}:54321",  # another port that starts like ours
        f"{RDS}:543",
        f"{RDS}:5432abc",
        f"{RDS}-2:5432",
        f"{RDS}",  # no port: nothing to map
        "no hosts here at all",
        "",
    ],
)
def test_no_partial_matches(net, text):
    assert net.rewrite(text) == text


def test_several_occurrences_and_surrounding_text_kept_byte_for_byte(net):
    text = f'  a={RDS}:5432, b="{RDS}:5432"\n\tc=other.example.com:5432 {RDS}:5432.'
    expected = (
        '  a=127.0.0.1:40001, b="127.0.0.1:40001"\n\tc=other.example.com:5432 127.0.0.1:40001.'
    )
    assert net.rewrite(text) == expected


def test_resolver_for_service_names():
    net = Network()
    seen = []

    def services(host, port):
        seen.append((host, port))
        if host in ("dbos-app.dbos.svc.cluster.local", "dbos-app.dbos.svc", "dbos-app.dbos"):
            return ("127.0.0.1", 41000 + port % 10)
        return None

    net.add_resolver(services)
    url = "http://dbos-app.dbos.svc.cluster.local:8080/metrics/taskQueue?x=1"
    assert net.rewrite(url) == "http://127.0.0.1:41000/metrics/taskQueue?x=1"
    assert net.rewrite("dbos-app.dbos:8081") == "127.0.0.1:41001"
    assert net.rewrite("ws://dbos-app.dbos.svc:8080") == "ws://127.0.0.1:41000"
    # Hosts are passed lower-cased.
    net.rewrite("Dbos-App.DBOS.svc:8080")
    assert ("dbos-app.dbos.svc", 8080) in seen


def test_static_entries_win_over_resolvers_and_broken_resolvers_are_skipped(net):
    def broken(host, port):
        raise RuntimeError("boom")

    def other(host, port):
        return ("127.0.0.2", 1) if host == "svc.ns" else None

    net.add_resolver(broken)
    net.add_resolver(other)
    assert net.resolve(RDS, 5432) == ("127.0.0.1", 40001)
    assert net.rewrite("svc.ns:80") == "127.0.0.2:1"


def test_entries_for_the_state_file(net):
    assert net.entries() == {f"{RDS}:5432": "127.0.0.1:40001"}
