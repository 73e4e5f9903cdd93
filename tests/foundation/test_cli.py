"""The command line: the seal command against the real vector, and the plan."""

import subprocess
import sys
from pathlib import Path

import yaml

from runbook_lib import sealing

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "sealed-secrets"


def _run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runbook_lib", *args], input=stdin,
                          capture_output=True, timeout=60)


def test_seal_reads_stdin_and_prints_only_the_sealed_value(tmp_path):
    cert = VECTORS / "controller.crt"
    if not cert.exists():
        import pytest

        pytest.skip("the shared Sealed Secrets vector is not beside this checkout")
    value = b"a-value-typed-by-an-operator"
    result = _run("seal", "--cert", str(cert), "--namespace", "foo", "--name", "credentials",
                  stdin=value + b"\n")
    assert result.returncode == 0, result.stderr
    sealed = result.stdout.decode().strip()
    assert sealed.startswith("Ag") and value.decode() not in result.stdout.decode()
    key = (VECTORS / "controller.key").read_bytes()
    assert sealing.unseal_value(key, sealed, namespace="foo", name="credentials") == value


def test_plan_creates_nothing_and_lists_every_stage():
    result = _run("plan", "-f", "parameters/eks.yaml")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    for stage in ("Preflight", "Infrastructure", "Sealed secrets", "Database migration",
                  "Application deployment", "Autoscaling", "Versioned upgrade", "Cleanup"):
        assert stage in text
    assert "db.t4g.micro" in text and "dbos-app-cluster" in text


def test_plan_with_bad_parameters_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"cluster": {"nodes": 0}, "aws": {"region": "nowhere"}}))
    result = _run("plan", "-f", str(bad))
    assert result.returncode == 2
    assert b"cluster.nodes" in result.stderr and b"aws.region" in result.stderr
