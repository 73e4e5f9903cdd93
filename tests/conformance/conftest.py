"""Fixtures of the conformance suite: a cluster to talk to, clients, namespaces, kubectl.

By default the suite starts the sandbox Kubernetes API server (on a thread, port 0) and writes
a kubeconfig for it. With ``CONFORMANCE_KUBECONFIG=/path/to/kubeconfig`` the same tests run
against that cluster instead (kind, k3d, anything), which is how one shows the sandbox behaves
like the real thing. Tests therefore use unique names, clean up after themselves, and never
assume that no controller runs; the few that need a sandbox hook (pod logs, the service proxy's
resolver, a short watch history) are skipped on a real cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config

from runbook_lib.sandbox.kubeapi import ServerThread, write_kubeconfig

from .support import (
    Crd,
    Target,
    crd_manifest,
    unique,
    wait_established,
    wait_served,
)


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    external = os.environ.get("CONFORMANCE_KUBECONFIG")
    if external:
        api = config.new_client_from_config(config_file=external)
        try:
            yield Target(external, api, None)
        finally:
            api.close()
        return
    thread = ServerThread()
    thread.start()
    try:
        path = tmp_path_factory.mktemp("kube") / "kubeconfig"
        write_kubeconfig(path, thread.url)
        api = config.new_client_from_config(config_file=str(path))
        try:
            yield Target(str(path), api, thread)
        finally:
            api.close()
    finally:
        thread.stop()


@pytest.fixture(scope="session")
def core(target: Target) -> client.CoreV1Api:
    return client.CoreV1Api(target.api)


@pytest.fixture(scope="session")
def apps(target: Target) -> client.AppsV1Api:
    return client.AppsV1Api(target.api)


@pytest.fixture(scope="session")
def batch(target: Target) -> client.BatchV1Api:
    return client.BatchV1Api(target.api)


@pytest.fixture(scope="session")
def custom(target: Target) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(target.api)


@pytest.fixture(scope="session")
def extensions(target: Target) -> client.ApiextensionsV1Api:
    return client.ApiextensionsV1Api(target.api)


@pytest.fixture
def ns(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace, deleted afterwards (without waiting for it to go)."""
    name = unique("conf")
    core.create_namespace({"metadata": {"name": name, "labels": {"conformance": "true"}}})
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except client.ApiException:
            pass


@pytest.fixture(scope="session")
def kubectl(target: Target, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """Run kubectl against the target; skipped when kubectl is not installed."""
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("kubectl is not installed")
    cache = tmp_path_factory.mktemp("kubectl-cache")

    def run(*args: str, input_text: str | None = None, check: bool = True,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        command = [binary, "--kubeconfig", target.kubeconfig, "--cache-dir", str(cache), *args]
        result = subprocess.run(command, check=False, input=input_text, capture_output=True,
                                text=True, timeout=timeout,
                                env={**os.environ, "KUBECONFIG": target.kubeconfig})
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture
def crd(extensions: client.ApiextensionsV1Api, target: Target) -> Iterator[Crd]:
    """A fresh namespaced CRD with a status subresource, established, deleted afterwards."""
    group = f"{uuid.uuid4().hex[:8]}.conformance.example.com"
    manifest = crd_manifest(group)
    extensions.create_custom_resource_definition(manifest)
    name = manifest["metadata"]["name"]
    try:
        wait_established(extensions, name)
        wait_served(target, f"/apis/{group}/v1", "widgets")
        yield Crd(group, "widgets", "Widget", name)
    finally:
        try:
            extensions.delete_custom_resource_definition(name)
        except client.ApiException:
            pass
