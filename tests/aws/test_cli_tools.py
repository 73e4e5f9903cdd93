"""The eks target's eksctl, helm and docker classes, run against recording stand-in executables.

The real binaries are not on this machine. Each test puts a small script named ``eksctl``,
``helm`` or ``docker`` in a temporary folder; it records its arguments and standard input and
answers from a table of canned replies (exit code, stdout, stderr) keyed by argument prefix.
What is tested is our side: the command lines built, the password kept on stdin, errors turned
into TargetError with secrets scrubbed, and the idempotent decisions taken from the replies.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from runbook_lib import cli_tools
from runbook_lib.cli_tools import Docker, Eksctl, Helm
from runbook_lib.errors import TargetError

FAKE = """#!{python}
import json, os, sys
argv = sys.argv[1:]
entry = {{"tool": os.path.basename(sys.argv[0]), "argv": argv}}
if "--password-stdin" in argv:
    entry["stdin"] = sys.stdin.read()
if "--values" in argv:
    path = argv[argv.index("--values") + 1]
    entry["values"] = open(path).read()
    entry["values_mode"] = oct(os.stat(path).st_mode & 0o777)
with open(os.environ["FAKE_RECORD"], "a") as record:
    record.write(json.dumps(entry) + "\\n")
for rule in json.load(open(os.environ["FAKE_RULES"])):
    if argv[: len(rule["prefix"])] == rule["prefix"]:
        sys.stdout.write(rule.get("stdout", ""))
        sys.stderr.write(rule.get("stderr", ""))
        sys.exit(rule.get("exit", 0))
"""


class Fake:
    """A recording stand-in for one external binary."""

    def __init__(self, folder: Path, name: str, monkeypatch):
        self.path = folder / name
        self.path.write_text(FAKE.format(python=sys.executable))
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)
        self.record = folder / f"{name}.record"
        self.rules_file = folder / f"{name}.rules"
        self.reply([])
        monkeypatch.setenv("FAKE_RECORD", str(self.record))
        monkeypatch.setenv("FAKE_RULES", str(self.rules_file))

    def reply(self, rules: list[dict]) -> None:
        self.rules_file.write_text(json.dumps(rules))

    def calls(self) -> list[dict]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls()]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    return lambda name: Fake(tmp_path, name, monkeypatch)


# --- docker -------------------------------------------------------------------------------------


def test_docker_login_feeds_the_password_on_stdin_only(fake, caplog):
    caplog.set_level(logging.DEBUG)
    docker = fake("docker")
    docker.reply([{"prefix": ["login"], "stdout": "Login Succeeded\n"}])
    password = "ecr-Token-Value-4f9a8b7c6d5e"

    Docker(docker.path).login("123456789012.dkr.ecr.us-west-2.amazonaws.com", "AWS", password)

    (call,) = docker.calls()
    assert call["argv"] == ["login", "--username", "AWS", "--password-stdin",
                            "123456789012.dkr.ecr.us-west-2.amazonaws.com"]
    assert call["stdin"] == password
    assert password not in caplog.text


def test_docker_login_failure_scrubs_the_password_from_the_error(fake, caplog):
    caplog.set_level(logging.DEBUG)
    docker = fake("docker")
    password = "ecr-Token-Value-9z8y7x6w5v4u"
    token = "eyJwYXlsb2FkIjoiAAAA.eyJkYXRha2V5IjoiBBBB.sig"
    docker.reply([{"prefix": ["login"], "exit": 1,
                   "stderr": f"Error: denied for {password} (token {token})\n"}])

    with pytest.raises(TargetError) as caught:
        Docker(docker.path).login("registry.example", "AWS", password)

    message = str(caught.value)
    assert "exit 1" in message and "denied" in message
    assert password not in message and token not in message
    assert password not in caplog.text


def test_docker_build_and_push_report_the_digest(fake):
    docker = fake("docker")
    digest = "sha256:" + "ab" * 32
    docker.reply([
        {"prefix": ["build"], "stdout": "#1 building\n#2 DONE\n"},
        {"prefix": ["push"], "stdout": f"v1: digest: {digest} size: 1573\n"},
    ])
    tool = Docker(docker.path)
    ref = "123456789012.dkr.ecr.us-west-2.amazonaws.com/dbos-app:v1"

    tool.build(Path("app"), Path("app/Dockerfile"), ref)
    assert tool.push(ref) == digest
    assert docker.argvs() == [
        ["build", "--platform", "linux/amd64", "-t", ref, "-f", "app/Dockerfile", "app"],
        ["push", ref],
    ]


def test_docker_push_falls_back_to_inspect_for_the_digest(fake):
    docker = fake("docker")
    repo = "123456789012.dkr.ecr.us-west-2.amazonaws.com/dbos-app"
    digest = "sha256:" + "cd" * 32
    docker.reply([
        {"prefix": ["push"], "stdout": "pushed\n"},
        {"prefix": ["inspect"],
         "stdout": json.dumps([f"other.example/x@sha256:{'00' * 32}", f"{repo}@{digest}"])},
    ])
    assert Docker(docker.path).push(f"{repo}:v1") == digest
    assert docker.argvs()[1] == ["inspect", "--format", "{{json .RepoDigests}}", f"{repo}:v1"]


# --- helm ---------------------------------------------------------------------------------------


NOT_FOUND = {"exit": 1, "stderr": "Error: release: not found\n"}


def test_helm_installs_a_missing_release_with_the_walkthrough_flags(fake, tmp_path):
    helm = fake("helm")
    helm.reply([{"prefix": ["status"], **NOT_FOUND}])
    kubeconfig = tmp_path / "kubeconfig"

    result = Helm(helm.path).upgrade_install(
        "keda", "kedacore/keda", namespace="keda", repo_url="https://kedacore.github.io/charts",
        kubeconfig=kubeconfig, version="2.16.1", values={"resources": {"limits": {"cpu": "1"}}},
        timeout_s=240,
    )

    assert result == "installed"
    calls = helm.calls()
    assert [c["argv"][:2] for c in calls] == [
        ["repo", "add"], ["repo", "update"], ["status", "keda"], ["upgrade", "--install"]]
    assert calls[0]["argv"] == ["repo", "add", "kedacore", "https://kedacore.github.io/charts",
                                "--force-update"]
    upgrade = calls[3]["argv"]
    values_path = upgrade[upgrade.index("--values") + 1]
    assert upgrade == [
        "upgrade", "--install", "keda", "kedacore/keda", "--namespace", "keda",
        "--create-namespace", "--version", "2.16.1", "--values", values_path, "--wait",
        "--timeout", "240s", "--kubeconfig", str(kubeconfig),
    ]
    assert "cpu: '1'" in calls[3]["values"] and calls[3]["values_mode"] == "0o600"
    assert not os.path.exists(values_path)  # the temporary values file is gone


def test_helm_leaves_a_release_that_is_already_as_wanted(fake, tmp_path):
    helm = fake("helm")
    helm.reply([
        {"prefix": ["status"], "stdout": json.dumps({"info": {"status": "deployed"}})},
        {"prefix": ["list"], "stdout": json.dumps([{"name": "sealed-secrets",
                                                    "chart": "sealed-secrets-2.17.1"}])},
        {"prefix": ["get", "values"], "stdout": json.dumps({"fullnameOverride": "sealed-secrets"})},
    ])
    result = Helm(helm.path).upgrade_install(
        "sealed-secrets", "sealed-secrets/sealed-secrets", namespace="kube-system",
        repo_url="https://bitnami-labs.github.io/sealed-secrets", kubeconfig=tmp_path / "k",
        version="2.17.1", values={"fullnameOverride": "sealed-secrets"}, create_namespace=False,
    )
    assert result == "unchanged"
    assert not any(argv[0] == "upgrade" for argv in helm.argvs())

    # A different version is an upgrade.
    result = Helm(helm.path).upgrade_install(
        "sealed-secrets", "sealed-secrets/sealed-secrets", namespace="kube-system",
        repo_url="https://bitnami-labs.github.io/sealed-secrets", kubeconfig=tmp_path / "k",
        version="2.18.0", values={"fullnameOverride": "sealed-secrets"}, create_namespace=False,
    )
    assert result == "upgraded"
    (upgrade,) = [argv for argv in helm.argvs() if argv[0] == "upgrade"]
    assert "--create-namespace" not in upgrade and "2.18.0" in upgrade


def test_helm_status_and_uninstall_of_a_missing_release(fake, tmp_path):
    helm = fake("helm")
    helm.reply([{"prefix": ["status"], **NOT_FOUND}, {"prefix": ["uninstall"], **NOT_FOUND}])
    tool = Helm(helm.path)
    assert tool.release_status("keda", namespace="keda", kubeconfig=tmp_path / "k") is None
    assert tool.uninstall("keda", namespace="keda", kubeconfig=tmp_path / "k") is False
    assert helm.argvs()[1] == ["uninstall", "keda", "--namespace", "keda", "--wait",
                               "--kubeconfig", str(tmp_path / "k")]


# --- eksctl -------------------------------------------------------------------------------------


CONFIG = (
    "apiVersion: eksctl.io/v1alpha5\nkind: ClusterConfig\n"
    "metadata:\n  name: c1\n  region: us-west-2\n"
)


def test_eksctl_creates_a_missing_cluster_from_the_config_file(fake, tmp_path):
    eksctl = fake("eksctl")
    eksctl.reply([{"prefix": ["get", "cluster"], "exit": 1,
                   "stderr": "Error: unable to describe cluster control plane: operation error "
                             "EKS: DescribeCluster, ResourceNotFoundException: No cluster found "
                             "for name: c1.\n"}])
    config = tmp_path / "cluster.yaml"
    config.write_text(CONFIG)
    kubeconfig = tmp_path / "state" / "kubeconfig"

    Eksctl(eksctl.path).create_cluster(config, kubeconfig)

    assert eksctl.argvs() == [
        ["get", "cluster", "--name", "c1", "--region", "us-west-2", "-o", "json"],
        ["create", "cluster", "-f", str(config), "--kubeconfig", str(kubeconfig)],
    ]


def test_eksctl_on_an_existing_cluster_only_writes_the_kubeconfig(fake, tmp_path):
    eksctl = fake("eksctl")
    eksctl.reply([{"prefix": ["get", "cluster"], "stdout": json.dumps([{"Name": "c1"}])}])
    config = tmp_path / "cluster.yaml"
    config.write_text(CONFIG)

    Eksctl(eksctl.path).create_cluster(config, tmp_path / "kubeconfig")

    assert eksctl.argvs()[1] == ["utils", "write-kubeconfig", "--cluster", "c1", "--region",
                                 "us-west-2", "--kubeconfig", str(tmp_path / "kubeconfig")]
    assert not any(argv[0] == "create" for argv in eksctl.argvs())


def test_eksctl_delete_waits_and_tolerates_an_absent_cluster(fake):
    eksctl = fake("eksctl")
    eksctl.reply([{"prefix": ["delete"], "exit": 1,
                   "stderr": "Error: ResourceNotFoundException: No cluster found for name: c1\n"}])
    Eksctl(eksctl.path).delete_cluster("c1", "us-west-2")
    assert eksctl.argvs() == [["delete", "cluster", "--name", "c1", "--region", "us-west-2",
                               "--wait"]]

    eksctl.reply([{"prefix": ["delete"], "exit": 1, "stderr": "Error: AccessDenied\n"}])
    with pytest.raises(TargetError, match="AccessDenied"):
        Eksctl(eksctl.path).delete_cluster("c1", "us-west-2")


def test_versions_and_a_missing_binary(fake):
    for name, cls, args, reply in (
        ("eksctl", Eksctl, ["version"], "0.201.0\n"),
        ("helm", Helm, ["version", "--short"], "v3.16.3+gcfd0749\n"),
        ("docker", Docker, ["version", "--format", "{{.Client.Version}}"], "27.3.1\n"),
    ):
        tool = fake(name)
        tool.reply([{"prefix": args, "stdout": reply}])
        assert cls(tool.path).version() == reply.strip()
    with pytest.raises(TargetError, match="not installed"):
        Docker("no-such-docker-binary").version()


def test_scrub_masks_tokens_but_keeps_digests():
    digest = "sha256:" + "0123456789abcdef" * 4
    text = (f"pushed {digest}; password=hunter2hunter2 Authorization: Bearer abcdefghijkl123 "
            f"and {'Q' * 50}")
    cleaned = cli_tools.scrub(text, secrets=["explicit-secret"])
    assert digest in cleaned
    assert "hunter2hunter2" not in cleaned and "abcdefghijkl123" not in cleaned
    assert "Q" * 50 not in cleaned
    assert cli_tools.scrub("a explicit-secret b", ["explicit-secret"]) == "a [redacted] b"
