"""Sealed secrets: the walkthrough's three Secrets, sealed in Python and applied.

The values come from the secret sources and are sealed against the Sealed Secrets controller's
certificate, fetched through the Kubernetes API (no kubeseal binary). The SealedSecret YAML goes
into the record (it is safe to commit) and is applied; then the stage waits until the controller
has produced each Secret with the expected keys, printing keys and never values.

Sealing is randomised, so sealing the same value twice gives new ciphertext. To keep a re-run
from changing anything, a Secret whose current values already equal the wanted ones is left as
it is (compared in memory, never shown).
"""

from __future__ import annotations

import hashlib
import logging
from base64 import b64decode

from runbook_lib import kube, labels, sealing
from runbook_lib.errors import TargetError
from runbook_lib.outcome import Outcome, Report
from runbook_lib.progress import Status, wait_for
from runbook_lib.stages.common import admin_url, app_url, conductor_key, kube_api

log = logging.getLogger("runbook_lib.stages.secrets")


def certificate(stage) -> bytes:
    """The controller's certificate, through the API server's service proxy."""
    cert = sealing.fetch_certificate(kube_api(stage))
    stage.write_artifact("sealed-secrets-cert.pem", cert.decode())
    fingerprint = hashlib.sha256(cert).hexdigest()[:16]
    print(f"controller certificate: {len(cert)} bytes, sha256 {fingerprint}…")
    return cert


def wanted(stage) -> dict[str, dict[str, bytes]]:
    """Secret name -> key -> value, built from the sources (values stay in memory)."""
    names = stage.params.secrets.names
    from runbook_lib.secrets_resolver import secret

    result = {
        names.admin: {
            "password": secret(stage.target, "postgres_password").encode(),
            "database-url": admin_url(stage).encode(),
        },
        names.app_db: {"database-url": app_url(stage).encode()},
    }
    key = conductor_key(stage)
    if key is not None:
        result[names.conductor] = {"api-key": key.encode()}
    return result


def expected_keys(stage) -> dict[str, list[str]]:
    """Secret name -> its keys, without reading any value."""
    names = stage.params.secrets.names
    keys = {names.admin: ["database-url", "password"], names.app_db: ["database-url"]}
    if conductor_key(stage) is not None:
        keys[names.conductor] = ["api-key"]
    return keys


def _current_values(api, namespace: str, name: str) -> dict[str, bytes] | None:
    obj = kube.get(api, "v1", "Secret", namespace, name)
    if obj is None:
        return None
    return {k: b64decode(v) for k, v in (obj.get("data") or {}).items()}


def seal_and_apply(stage, cert: bytes) -> list[Outcome]:
    """Seal each wanted Secret (unless it already holds these values) and apply it."""
    api = kube_api(stage)
    params = stage.params
    namespace, deployment = params.app.namespace, params.deployment_id
    outcomes = []
    for name, data in wanted(stage).items():
        existing_sealed = kube.get(api, "bitnami.com/v1alpha1", "SealedSecret", namespace, name)
        kube.require_ours(existing_sealed, deployment)
        if existing_sealed is not None and _current_values(api, namespace, name) == data:
            manifest = {k: existing_sealed[k] for k in ("apiVersion", "kind", "spec")}
            manifest["metadata"] = {k: existing_sealed["metadata"][k]
                                    for k in ("name", "namespace", "labels")
                                    if k in existing_sealed["metadata"]}
            stage.write_artifact(f"sealed-{name}.yaml", kube_yaml(manifest))
            outcomes.append(Outcome("SealedSecret", f"{namespace}/{name}", "found",
                                    detail="the Secret already holds these values"))
            continue
        manifest = sealing.sealed_secret(
            name, namespace, data, cert, scope=params.secrets.scope,
            labels=labels.kube_labels(deployment),
        )
        manifest["metadata"].setdefault("labels", {}).update(labels.kube_labels(deployment))
        stage.write_artifact(f"sealed-{name}.yaml", kube_yaml(manifest))
        outcomes.append(kube.apply(api, manifest))
    return stage.show(outcomes)


def kube_yaml(manifest: dict) -> str:
    from runbook_lib.manifests import to_yaml

    return to_yaml([manifest])


def verify(stage) -> list[tuple[str, str, list[str]]]:
    """Wait until the controller made every Secret with the expected keys; print a table."""
    api = kube_api(stage)
    namespace = stage.params.app.namespace
    expected = expected_keys(stage)

    def check() -> Status:
        missing = []
        for name, keys in expected.items():
            have = kube.secret_keys(api, namespace, name)
            if have != keys:
                missing.append(f"{name}: {'absent' if have is None else 'keys ' + str(have)}")
        if missing:
            for name in expected:
                sealed = kube.get(api, "bitnami.com/v1alpha1", "SealedSecret", namespace, name)
                for cond in ((sealed or {}).get("status") or {}).get("conditions", []):
                    if cond.get("type") == "Synced" and cond.get("status") == "False":
                        return Status(False, f"{name}: {cond.get('message', '')}", failed=True)
        return Status(not missing, "; ".join(missing) or "all present")

    status = wait_for("the controller to unseal the Secrets", check,
                      stage.params.timeouts.secrets, 0.5)
    if status.failed:
        raise TargetError(f"the Sealed Secrets controller could not unseal: {status.state}")
    rows = []
    print(f"{'NAME':<24}{'TYPE':<10}{'DATA':<6}KEYS")
    for name in sorted(expected):
        obj = kube.get(api, "v1", "Secret", namespace, name)
        keys = sorted((obj.get("data") or {}).keys())
        rows.append((name, obj.get("type", ""), keys))
        print(f"{name:<24}{obj.get('type', ''):<10}{len(keys):<6}{', '.join(keys)}")
    return Report(rows=rows)
