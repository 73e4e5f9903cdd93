"""up, status and down of the real daemon; nothing may outlive it, however it ends."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time

import boto3

from runbook_lib import sandbox

from .support import assert_nothing_left, listening, pid_alive


def _wait(predicate, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_up_status_up_again_down(sandboxes):
    directory = sandboxes.directory()
    assert sandbox.status(directory) is None

    started = time.monotonic()
    info = sandboxes.up(directory)
    print(f"up to ready: {time.monotonic() - started:.2f} s")
    assert info.directory == directory
    assert listening(int(info.kube_url.rsplit(":", 1)[1]))
    assert info.aws_endpoint_url.startswith("http://127.0.0.1:")

    state_file = directory / "state.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(info.kubeconfig.stat().st_mode) == 0o600
    assert json.loads(state_file.read_text())["pid"] == info.pid
    assert (directory / "daemon.log").exists()

    # Idempotent: a second up returns the same daemon.
    again = sandbox.up(directory)
    assert again.pid == info.pid and again.kube_url == info.kube_url
    assert sandbox.status(directory).pid == info.pid

    # The environment points unmodified tools at it.
    env = sandbox.env(info)
    assert env["KUBECONFIG"] == str(info.kubeconfig)
    assert env["AWS_ACCESS_KEY_ID"] == "testing"
    sts = boto3.client(
        "sts", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip
    assert sts.get_caller_identity()["Account"] == info.account_id
    # moto was started with the AWS-managed IAM policies.
    iam = boto3.client(
        "iam", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    policy = iam.get_policy(PolicyArn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy")
    assert policy["Policy"]["PolicyName"] == "AmazonEKSClusterPolicy"
    assert any("moto" in line for line in info.describe())

    started = time.monotonic()
    assert sandbox.down(directory) is True
    print(f"down: {time.monotonic() - started:.2f} s")
    assert_nothing_left(info)
    assert not state_file.exists()
    assert sandbox.status(directory) is None
    assert sandbox.down(directory) is False


def test_sigkill_of_the_worker_leaves_nothing(sandboxes):
    info = sandboxes.up()
    rds = boto3.client(
        "rds", endpoint_url=info.aws_endpoint_url, region_name=info.region,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    rds.create_db_instance(
        DBInstanceIdentifier="killed", DBInstanceClass="db.t4g.micro", Engine="postgres",
        MasterUsername="postgres", MasterUserPassword="pw-for-the-kill-test",
        AllocatedStorage=20,
    )  # fmt: skip
    # And a pod: a local process started by the kubelet (an unknown image runs its command).
    marker = "987.25"
    subprocess.run(
        ["kubectl", "run", "sleeper", "--image=busybox", "--restart=Never", "--command", "--",
         "sleep", marker],
        env={**os.environ, **sandbox.env(info)}, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    assert _wait(lambda: _processes_with(marker), 60), "the pod's process did not start"
    pod_pids = _processes_with(marker)

    info = sandbox.status(info.directory)
    entry = info.rds["killed"]
    server_pid, local_port = int(entry["server_pid"]), int(entry["local"].rsplit(":", 1)[1])
    server_port = int(entry["server_port"])
    assert pid_alive(server_pid) and listening(server_port)

    os.kill(info.pid, signal.SIGKILL)
    # The supervisor stops what the worker left (PostgreSQL), then exits.
    assert _wait(lambda: not pid_alive(info.supervisor_pid))
    assert not pid_alive(server_pid)
    assert not any(pid_alive(p) for p in pod_pids)
    assert not listening(server_port) and not listening(local_port)
    assert sandbox.status(info.directory) is None
    # down() clears the stale state file and finds nothing running.
    sandbox.down(info.directory)
    assert not (info.directory / "state.json").exists()


def _processes_with(arg: str) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if arg in (proc.info["cmdline"] or []) and pid_alive(proc.pid):
            found.append(proc.pid)
    return found


def test_sigkill_of_the_supervisor_stops_the_worker(sandboxes):
    info = sandboxes.up()
    os.kill(info.supervisor_pid, signal.SIGKILL)
    assert _wait(lambda: not pid_alive(info.pid))
    assert_nothing_left(info)


def test_default_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNBOOK_SANDBOX_DIR", str(tmp_path / "x"))
    assert sandbox.default_directory() == tmp_path / "x"
    monkeypatch.delenv("RUNBOOK_SANDBOX_DIR")
    assert sandbox.default_directory().name == ".sandbox"
    assert (sandbox.default_directory().parent / "runbook_lib").is_dir()
