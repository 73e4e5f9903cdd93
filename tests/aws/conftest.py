"""Fixtures for the AWS tests: one real moto server for the session, reset before each test.

The server is the venv's ``moto_server`` on a free port of 127.0.0.1, started with
MOTO_IAM_LOAD_MANAGED_POLICIES=true (eksctl's roles need AWS managed policies). Each test gets a
fresh ``boto3.Session`` with fake credentials, so nothing can reach real AWS.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .common import CLUSTER, DEPLOYMENT, REGION, fake_session


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str) -> None:
    # A reset after IAM was used rebuilds moto's IAM backends with every AWS managed policy,
    # which takes seconds on a busy machine.
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """The URL of a moto server that lives for the whole test session."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env.pop(name, None)
    executable = Path(sys.executable).parent / "moto_server"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [str(executable), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _post(f"{url}/moto-api/reset")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start; see {log_path}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def moto(moto_server):
    """The moto URL, with every resource from earlier tests wiped."""
    _post(f"{moto_server}/moto-api/reset")
    return moto_server


@pytest.fixture(scope="session")
def shared_session():
    """One session for the whole run: its clients (and their service models) are reused."""
    return fake_session()


@pytest.fixture
def session(moto, shared_session):
    """The shared session, on a freshly reset moto server."""
    return shared_session


@pytest.fixture
def standin(session, moto):
    """The sandbox eksctl stand-in on this test's moto; the kube URL is only written down."""
    from runbook_lib.sandbox.eksctl_standin import SandboxEksctl

    return SandboxEksctl(session, moto, "http://127.0.0.1:6443", wait_interval_s=0.05)


@pytest.fixture
def cluster_config_file(tmp_path):
    """The walkthrough's cluster as a ClusterConfig file, tagged for DEPLOYMENT."""
    from runbook_lib import eksctl

    config = eksctl.cluster_config(
        cluster=CLUSTER,
        region=REGION,
        version="1.31",
        nodegroup="default",
        instance_type="t3.medium",
        nodes=2,
        min_nodes=2,
        max_nodes=2,
        deployment=DEPLOYMENT,
    )
    return eksctl.write(config, tmp_path / "cluster.yaml")


@pytest.fixture
def cluster(standin, cluster_config_file, tmp_path):
    """A cluster created by the stand-in; returns the kubeconfig path."""
    kubeconfig = tmp_path / "kubeconfig"
    standin.create_cluster(cluster_config_file, kubeconfig)
    return kubeconfig
