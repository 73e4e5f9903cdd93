"""The Kubernetes manifests the runbook applies, rendered from the parameters.

Each function returns plain dicts shaped as in the walkthrough (the database-setup Job, the
migration Job, the app's Deployment and Service, the KEDA ScaledObject), with the runbook's
labels on every object. :func:`validate` checks them offline against the cluster version's
schema before anything is applied: strict, so a misspelt field is an error. Secret values never
appear in a manifest: pods get them through ``secretKeyRef``.
"""

from __future__ import annotations

import yaml

from runbook_lib import labels
from runbook_lib.errors import ParameterError

# The database-setup script: idempotent, passwords read from the environment inside psql
# (never on a command line), terse errors so that no statement text is echoed.
DB_SETUP_SCRIPT = r"""set -eu
psql "$ADMIN_URL" -X -q -v ON_ERROR_STOP=1 <<'SQL'
\set VERBOSITY terse
\getenv db_name DB_NAME
\getenv app_role APP_ROLE
\getenv app_password APP_ROLE_PASSWORD
SELECT CASE WHEN EXISTS (SELECT FROM pg_database WHERE datname = :'db_name')
       THEN 'found' ELSE 'created' END AS db_action \gset
SELECT format('CREATE DATABASE %I', :'db_name') WHERE :'db_action' = 'created' \gexec
\echo database :db_name :db_action
SELECT CASE WHEN EXISTS (SELECT FROM pg_roles WHERE rolname = :'app_role')
       THEN 'found' ELSE 'created' END AS role_action \gset
SELECT format('CREATE ROLE %I WITH LOGIN', :'app_role') WHERE :'role_action' = 'created' \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'app_role', :'app_password') \gexec
\echo role :app_role :role_action (password set from its source)
SQL
"""


def _meta(name: str, namespace: str | None, deployment: str, extra: dict | None = None) -> dict:
    meta = {"name": name, "labels": {**labels.kube_labels(deployment), **(extra or {})}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def db_setup(params, *, image: str, secret_name: str) -> list[dict]:
    """The Job that creates the database and the restricted role from inside the cluster.

    The Secret ``secret_name`` (created separately, holding ``admin-url`` and
    ``app-role-password``) carries the passwords; the pod spec names only the Secret.
    """
    ns, dep = params.app.namespace, params.deployment_id
    container = {
        "name": "psql",
        "image": image,
        "command": ["sh", "-c", DB_SETUP_SCRIPT],
        "env": [
            _secret_env("ADMIN_URL", secret_name, "admin-url"),
            _secret_env("APP_ROLE_PASSWORD", secret_name, "app-role-password"),
            {"name": "DB_NAME", "value": params.database.name},
            {"name": "APP_ROLE", "value": params.database.app_role},
        ],
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta("dbos-db-setup", ns, dep),
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": labels.kube_labels(dep)},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }
    return [job]


def migrate_job(params, *, image: str) -> dict:
    """The walkthrough's migration Job: ``dbos migrate --app-role <role>`` as the admin."""
    ns, dep = params.app.namespace, params.deployment_id
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(params.app.migrate_job, ns, dep),
        "spec": {
            "backoffLimit": 3,
            "template": {
                "metadata": {"labels": labels.kube_labels(dep)},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "containers": [{
                        "name": "migrate",
                        "image": image,
                        "args": ["migrate", "--app-role", params.database.app_role],
                        "env": [_secret_env("DBOS_SYSTEM_DATABASE_URL",
                                            params.secrets.names.admin, "database-url")],
                    }],
                },
            },
        },
    }


def app_labels(params, version: str) -> dict:
    return {"app": params.app.name, "version": version}


def deployment_name(params, version: str) -> str:
    """One Deployment per application version, as the walkthrough's upgrade pattern wants."""
    return f"{params.app.name}-{version}"


def app_deployment(params, *, image: str, version: str, conductor: bool,
                   replicas: int | None = None) -> dict:
    """The app's Deployment for ``version`` (see the walkthrough's manifests/dbos-app.yaml)."""
    app, dep = params.app, params.deployment_id
    selector = app_labels(params, version)
    env = [
        _secret_env("DBOS_SYSTEM_DATABASE_URL", params.secrets.names.app_db, "database-url"),
        {"name": "DBOS__VMID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "DBOS__APPVERSION", "value": version},
        {"name": "QUEUE_NAME", "value": app.queue},
        {"name": "WORKER_CONCURRENCY", "value": str(app.worker_concurrency)},
        {"name": "PORT", "value": str(app.port)},
        {"name": "DRAIN_TIMEOUT_SECONDS", "value": f"{app.drain_seconds:g}"},
    ]
    if conductor:
        if app.conductor_url:
            env.append({"name": "DBOS_CONDUCTOR_URL", "value": app.conductor_url})
        env.append(_secret_env("DBOS_CONDUCTOR_KEY", params.secrets.names.conductor, "api-key"))
    probe = {"httpGet": {"path": "/healthz", "port": app.port}}
    container = {
        "name": app.name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": env,
        "ports": [{"containerPort": app.port, "name": "http"}],
        "readinessProbe": {**probe, "initialDelaySeconds": app.probes.readiness_initial_delay,
                           "periodSeconds": app.probes.readiness_period},
        "livenessProbe": {**probe, "initialDelaySeconds": app.probes.liveness_initial_delay,
                          "periodSeconds": app.probes.liveness_period},
        "resources": {
            "requests": {"cpu": app.requests.cpu, "memory": app.requests.memory},
            "limits": {"cpu": app.limits.cpu, "memory": app.limits.memory},
        },
    }
    pod_spec: dict = {
        # The app drains for drain_seconds after SIGTERM, then hands back what is left; the
        # extra 10 s keep Kubernetes from killing it during the hand-back.
        "terminationGracePeriodSeconds": int(app.drain_seconds) + 10,
        "containers": [container],
    }
    if conductor and app.conductor_tls_secret:
        _trust_conductor_certificate(pod_spec, container, app.conductor_tls_secret)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(deployment_name(params, version), app.namespace, dep, selector),
        "spec": {
            "replicas": replicas if replicas is not None else app.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**selector, **labels.kube_labels(dep)}},
                "spec": pod_spec,
            },
        },
    }


def _trust_conductor_certificate(pod_spec: dict, container: dict, tls_secret: str) -> None:
    """The walkthrough's recipe for a self-signed Conductor: extend the CA bundle at start."""
    pod_spec["initContainers"] = [{
        "name": "setup-certs",
        "image": "alpine:3.20",
        "command": ["sh", "-c", "cp /etc/ssl/certs/ca-certificates.crt /certs/ca-certificates.crt"
                    " && cat /tls/tls.crt >> /certs/ca-certificates.crt"],
        "volumeMounts": [{"name": "tls-cert", "mountPath": "/tls", "readOnly": True},
                         {"name": "ca-certs", "mountPath": "/certs"}],
    }]
    pod_spec["volumes"] = [
        {"name": "tls-cert", "secret": {"secretName": tls_secret,
                                        "items": [{"key": "tls.crt", "path": "tls.crt"}]}},
        {"name": "ca-certs", "emptyDir": {}},
    ]
    container["env"].append({"name": "SSL_CERT_FILE", "value": "/certs/ca-certificates.crt"})
    container["volumeMounts"] = [{"name": "ca-certs", "mountPath": "/certs", "readOnly": True}]


def app_service(params, version: str) -> dict:
    """The Service; its selector names one version, so new requests reach only that one."""
    app = params.app
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(app.name, app.namespace, params.deployment_id, {"app": app.name}),
        "spec": {
            "selector": app_labels(params, version),
            "ports": [{"name": "http", "port": app.port, "targetPort": app.port}],
        },
    }


def metrics_url(params) -> str:
    app = params.app
    return (f"http://{app.name}.{app.namespace}.svc.cluster.local:{app.port}"
            f"/metrics/{app.queue}")


def scaled_object(params, version: str) -> dict:
    """The walkthrough's ScaledObject, plus the HPA behaviour that makes scale-down take
    ``scale_down_window``: with minReplicaCount >= 1, N -> 1 is the HPA's to decide, and its
    default stabilization window is 300 s; cooldownPeriod only governs scaling to zero."""
    a = params.autoscaling
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(a.scaled_object, params.app.namespace, params.deployment_id),
        "spec": {
            "scaleTargetRef": {"name": deployment_name(params, version)},
            "pollingInterval": int(a.polling_interval),
            "cooldownPeriod": int(a.cooldown_period),
            "minReplicaCount": a.min_replicas,
            "maxReplicaCount": a.max_replicas,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {
                "stabilizationWindowSeconds": int(a.scale_down_window),
            }}}},
            "triggers": [{
                "type": "metrics-api",
                "metadata": {
                    "url": metrics_url(params),
                    "valueLocation": "queue_length",
                    "targetValue": str(a.target_value),
                },
            }],
        },
    }


# Offline validation --------------------------------------------------------------------------

_CUSTOM_REQUIRED = {
    "ScaledObject": ("spec.scaleTargetRef.name", "spec.triggers"),
    "SealedSecret": ("spec.encryptedData", "spec.template.metadata.name"),
}


def _dig(obj: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def validate(manifests: list[dict], kubernetes_version: str) -> None:
    """Validate every manifest against the schema of ``kubernetes_version`` (strict).

    Custom resources (ScaledObject, SealedSecret) have no published schema there; their
    required fields are checked here instead. Raises one ParameterError listing every problem.
    """
    import kubernetes_validate

    problems = []
    for manifest in manifests:
        kind = manifest.get("kind", "?")
        name = manifest.get("metadata", {}).get("name", "?")
        if kind in _CUSTOM_REQUIRED:
            missing = [f for f in _CUSTOM_REQUIRED[kind] if not _dig(manifest, f)]
            problems += [f"{kind} {name}: {field} is required" for field in missing]
            continue
        try:
            kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path) or "(top)"
            problems.append(f"{kind} {name}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{kind} {name}: no schema for Kubernetes {kubernetes_version}")
    if problems:
        raise ParameterError(problems, "rendered manifests")


def to_yaml(manifests: list[dict]) -> str:
    return "---\n".join(yaml.safe_dump(m, sort_keys=False) for m in manifests)
