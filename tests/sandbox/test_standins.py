"""The helm and docker stand-ins, against a real sandbox (API server, controllers, moto)."""

from __future__ import annotations

import base64
import gzip
import json
import time
from pathlib import Path

import boto3
import pytest

from runbook_lib.errors import TargetError
from runbook_lib.sandbox.images import ImageResolver
from runbook_lib.sandbox.standins import SandboxDocker, SandboxHelm

SEALED = (
    "sealed-secrets",
    "sealed-secrets/sealed-secrets",
    "kube-system",
    "https://bitnami-labs.github.io/sealed-secrets",
)
KEDA = ("keda", "kedacore/keda", "keda", "https://kedacore.github.io/charts")  # fmt: skip


def _install(helm, info, chart, **kw):
    release, name, namespace, repo = chart
    return helm.upgrade_install(
        release, name, namespace=namespace, repo_url=repo, kubeconfig=info.kubeconfig, **kw
    )


@pytest.fixture(scope="module")
def kube(shared_sandbox):
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(shared_sandbox.kubeconfig))
    yield client, api
    api.close()


def test_helm_installs_both_charts_idempotently(shared_sandbox, kube):
    info = shared_sandbox
    client, api = kube
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ext = client.ApiextensionsV1Api(api)
    helm = SandboxHelm(info)
    assert helm.name == "helm (sandbox stand-in)"
    assert helm.release_status("keda", namespace="keda", kubeconfig=info.kubeconfig) is None

    assert _install(helm, info, SEALED) == "installed"
    assert _install(helm, info, KEDA) == "installed"
    assert _install(helm, info, SEALED) == "unchanged"
    assert _install(helm, info, KEDA) == "unchanged"
    assert helm.release_status("keda", namespace="keda", kubeconfig=info.kubeconfig) == "deployed"

    # The release record is stored as helm 3 stores it.
    secret = core.read_namespaced_secret("sh.helm.release.v1.sealed-secrets.v1", "kube-system")
    assert secret.type == "helm.sh/release.v1"
    assert secret.metadata.labels["owner"] == "helm"
    assert secret.metadata.labels["status"] == "deployed"
    release = json.loads(
        gzip.decompress(base64.b64decode(base64.b64decode(secret.data["release"])))
    )
    assert release["name"] == "sealed-secrets" and release["version"] == 1
    assert release["chart"]["metadata"]["name"] == "sealed-secrets"
    assert "kind: Deployment" in release["manifest"]

    # What the charts create, by the real names and labels.
    dep = apps.read_namespaced_deployment("sealed-secrets", "kube-system")
    assert dep.metadata.labels["app.kubernetes.io/name"] == "sealed-secrets"
    assert dep.metadata.labels["app.kubernetes.io/instance"] == "sealed-secrets"
    container = dep.spec.template.spec.containers[0]
    assert container.image.startswith("docker.io/bitnami/sealed-secrets-controller:")
    assert container.ports[0].container_port == 8080
    assert container.readiness_probe.http_get.path == "/healthz"
    svc = core.read_namespaced_service("sealed-secrets", "kube-system")
    assert svc.spec.ports[0].port == 8080
    crd = ext.read_custom_resource_definition("sealedsecrets.bitnami.com")
    assert crd.spec.versions[0].name == "v1alpha1"
    assert crd.spec.versions[0].subresources.status is not None
    for name in ("scaledobjects", "scaledjobs", "triggerauthentications",
                 "clustertriggerauthentications"):  # fmt: skip
        crd = ext.read_custom_resource_definition(f"{name}.keda.sh")
        assert crd.spec.versions[0].subresources.status is not None
    for name in ("keda-operator", "keda-operator-metrics-apiserver", "keda-admission-webhooks"):
        dep = apps.read_namespaced_deployment(name, "keda")
        assert dep.spec.template.spec.containers[0].image.startswith("ghcr.io/kedacore/keda")
        core.read_namespaced_service(name, "keda")

    # The add-on pods run and become ready.
    wanted = [
        ("kube-system", "sealed-secrets"),
        ("keda", "keda-operator"),
        ("keda", "keda-operator-metrics-apiserver"),
        ("keda", "keda-admission-webhooks"),
    ]
    deadline = time.monotonic() + 90
    pending = list(wanted)
    while pending and time.monotonic() < deadline:
        pending = [
            (ns, name) for ns, name in pending
            if (apps.read_namespaced_deployment(name, ns).status.available_replicas or 0) < 1
        ]  # fmt: skip
        time.sleep(1)
    assert not pending, f"not available: {pending}"

    # A changed value upgrades; the old revision is superseded.
    assert _install(helm, info, SEALED, values={"secretName": "other-key"}) == "upgraded"
    labels = {s.metadata.name: s.metadata.labels["status"] for s in core.list_namespaced_secret(
        "kube-system", label_selector="owner=helm,name=sealed-secrets").items}  # fmt: skip
    assert labels == {
        "sh.helm.release.v1.sealed-secrets.v1": "superseded",
        "sh.helm.release.v1.sealed-secrets.v2": "deployed",
    }

    # Uninstall: KEDA's templated CRDs go; the Sealed Secrets CRD (from crds/) stays.
    assert helm.uninstall("keda", namespace="keda", kubeconfig=info.kubeconfig) is True
    assert helm.uninstall("keda", namespace="keda", kubeconfig=info.kubeconfig) is False
    assert helm.release_status("keda", namespace="keda", kubeconfig=info.kubeconfig) is None
    names = {c.metadata.name for c in ext.list_custom_resource_definition().items}
    assert "scaledobjects.keda.sh" not in names
    assert helm.uninstall("sealed-secrets", namespace="kube-system", kubeconfig=info.kubeconfig)
    names = {c.metadata.name for c in ext.list_custom_resource_definition().items}
    assert "sealedsecrets.bitnami.com" in names
    assert not [d for d in apps.list_namespaced_deployment("keda").items]


def test_helm_refuses_unknown_charts(shared_sandbox):
    helm = SandboxHelm(shared_sandbox)
    with pytest.raises(TargetError, match="knows the charts"):
        helm.upgrade_install("x", "bitnami/postgresql", namespace="default", repo_url="",
                             kubeconfig=shared_sandbox.kubeconfig)  # fmt: skip


def _app_context(tmp_path: Path) -> Path:
    ctx = tmp_path / "app"
    ctx.mkdir()
    (ctx / "main.py").write_text("print('hello')\n")
    (ctx / "Dockerfile").write_text(
        'FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nCMD ["python", "main.py"]\n'
    )
    return ctx


def test_docker_login_build_push_lists_the_image_in_ecr(shared_sandbox, tmp_path):
    info = shared_sandbox
    docker = SandboxDocker(info)
    registry = f"{info.account_id}.dkr.ecr.{info.region}.amazonaws.com"
    ecr = boto3.client(
        "ecr", endpoint_url=info.aws_endpoint_url, region_name=info.region,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, password = base64.b64decode(token).decode().split(":", 1)
    docker.login(registry, user, password)
    with pytest.raises(TargetError):
        docker.login("999999999999.dkr.ecr.us-west-2.amazonaws.com", user, password)
    with pytest.raises(TargetError):
        docker.login("docker.io", user, password)

    ctx = _app_context(tmp_path)
    ref = f"{registry}/dbos-app:latest"
    docker.build(ctx, ctx / "Dockerfile", ref)
    config = ImageResolver(info.directory).resolve(ref)
    assert config.cmd == ["python", "main.py"] and config.workdir == ctx.resolve()

    with pytest.raises(TargetError, match="does not exist"):
        docker.push(ref)  # no repository yet
    ecr.create_repository(repositoryName="dbos-app")
    digest = docker.push(ref)
    assert digest.startswith("sha256:")
    images = ecr.describe_images(repositoryName="dbos-app")["imageDetails"]
    assert [(i["imageDigest"], i["imageTags"]) for i in images] == [(digest, ["latest"])]
    assert docker.push(ref) == digest  # pushing again changes nothing
    assert len(ecr.list_images(repositoryName="dbos-app")["imageIds"]) == 1

    # The pushed digest resolves too (Deployments may pin images by digest).
    pinned = f"{registry}/dbos-app@{digest}"
    assert ImageResolver(info.directory).resolve(pinned) == config

    with pytest.raises(TargetError, match="does not exist locally"):
        docker.push(f"{registry}/dbos-app:never-built")
