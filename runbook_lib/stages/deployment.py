"""Application deployment: the app's Deployment and Service, as in the walkthrough.

Manifests are rendered from the parameters, validated offline against the cluster version's
schema (strict), written to the record, and applied with server-side apply. Then the rollout is
followed with progress, the pods' logs are tailed, and ``GET /healthz`` is sent through the API
server's service proxy — the runbook's port-forward, which needs no local port.
"""

from __future__ import annotations

import logging

from runbook_lib import kube, manifests
from runbook_lib.errors import RunbookError, TargetError
from runbook_lib.outcome import Outcome, Text
from runbook_lib.stages.common import conductor_key, image_ref, kube_api

log = logging.getLogger("runbook_lib.stages.deployment")

SECRETS_VERSION = "runbook.dbos.dev/secrets-version"


def render(stage, version: str | None = None, replicas: int | None = None) -> list[dict]:
    """The Deployment for ``version`` (default: app.version) and the Service pointing at it."""
    params = stage.params
    version = version or params.app.version
    image = image_ref(stage, params.images.app_repository, version)
    conductor = conductor_key(stage) is not None
    if replicas is None:
        # Once running, the replica count belongs to the autoscaler: keep what is there.
        existing = kube.get(kube_api(stage), "apps/v1", "Deployment", params.app.namespace,
                            manifests.deployment_name(params, version))
        if existing is not None:
            replicas = existing["spec"].get("replicas")
    objects = [
        manifests.app_deployment(params, image=image, version=version, conductor=conductor,
                                 replicas=replicas),
        manifests.app_service(params, version),
    ]
    # Pods read their Secrets when they start: a changed Secret rolls the pods.
    versions = []
    for name in (params.secrets.names.app_db, params.secrets.names.conductor):
        secret = kube.get(kube_api(stage), "v1", "Secret", params.app.namespace, name)
        if secret is not None:
            versions.append(f"{name}={secret['metadata'].get('resourceVersion', '')}")
    template = objects[0]["spec"]["template"]["metadata"]
    template.setdefault("annotations", {})[SECRETS_VERSION] = ",".join(versions)
    manifests.validate(objects, params.cluster.version)
    stage.write_artifact(f"dbos-app-{version}.yaml", manifests.to_yaml(objects))
    if conductor:
        print("Conductor: configured (URL and key from the parameters' sources)")
    else:
        print("Conductor: not configured (no key); the app recovers work on its own")
    return objects


def apply(stage, objects: list[dict]) -> list[Outcome]:
    return stage.show(kube.apply_all(kube_api(stage), objects))


def wait_ready(stage, version: str | None = None) -> None:
    """Follow the rollout; if it does not finish, show why, in the pods' own words."""
    params = stage.params
    version = version or params.app.version
    name = manifests.deployment_name(params, version)
    api = kube_api(stage)
    try:
        kube.wait_rollout(api, params.app.namespace, name, params.timeouts.rollout)
    except RunbookError as exc:
        selector = ",".join(f"{k}={v}" for k, v in manifests.app_labels(params, version).items())
        reasons = kube.pod_problems(api, params.app.namespace, selector)
        print("\n".join(reasons))
        print(kube.logs_for(api, params.app.namespace, selector, tail=15))
        raise TargetError(f"Deployment {params.app.namespace}/{name} did not become ready: "
                          f"{exc}; " + "; ".join(reasons)) from None


def tail_logs(stage, version: str | None = None, lines: int = 10) -> str:
    params = stage.params
    selector = ",".join(f"{k}={v}" for k, v in
                        manifests.app_labels(params, version or params.app.version).items())
    text = kube.logs_for(kube_api(stage), params.app.namespace, selector, tail=lines)
    print(text)
    return Text(text)


def health(stage) -> str:
    """GET /healthz on the Service through the API server (the runbook's port-forward)."""
    params = stage.params
    status, body = kube.wait_service(kube_api(stage), params.app.namespace, params.app.name,
                                     params.app.port, "/healthz", params.timeouts.rollout)
    print(f"GET http://{params.app.name}.{params.app.namespace}:{params.app.port}/healthz "
          f"-> HTTP {status} {body.strip()}")
    return Text(body)
