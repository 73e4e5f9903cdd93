"""Database migration: the walkthrough's Job running ``dbos migrate --app-role <role>``.

The Job runs as the admin (the ``postgres-admin`` Secret's database URL), creates or upgrades
the DBOS system tables and grants the restricted role what it needs. A finished Job with the same
spec is left alone on a re-run; one with another spec (a new migration image) or a failed one is
deleted and applied again, as the walkthrough does. Afterwards a short Job proves the privilege
separation from inside the cluster: the restricted role reads and writes the DBOS tables and
cannot create a table.
"""

from __future__ import annotations

import logging

from runbook_lib import kube, labels, manifests
from runbook_lib.errors import TargetError
from runbook_lib.outcome import Outcome, Text
from runbook_lib.stages.common import image_ref, kube_api

log = logging.getLogger("runbook_lib.stages.migration")

VERIFY_JOB = "dbos-verify-role"

VERIFY_SCRIPT = r"""set -eu
psql "$APP_URL" -X -q -v ON_ERROR_STOP=1 -t -A <<'SQL'
\set VERBOSITY terse
SELECT 'read workflow_status: ok (' || count(*) || ' rows)' FROM dbos.workflow_status;
SELECT CASE WHEN has_table_privilege('dbos.workflow_status', 'SELECT,INSERT,UPDATE,DELETE')
       THEN 'write privileges on dbos.workflow_status: ok'
       ELSE 'write privileges on dbos.workflow_status: MISSING' END;
SQL
if psql "$APP_URL" -X -q -v ON_ERROR_STOP=1 -c '\set VERBOSITY terse' \
     -c 'CREATE TABLE dbos.runbook_probe (x int)' 2>/tmp/verify-role.err; then
  echo 'create table: ALLOWED (the role is not restricted)'; exit 1
fi
echo "create table: denied ($(sed 's/^ERROR: *//' /tmp/verify-role.err | head -1))"
"""


SECRET_VERSION = "runbook.dbos.dev/admin-secret-version"


def render(stage) -> dict:
    params = stage.params
    image = image_ref(stage, params.images.migrate_repository)
    job = manifests.migrate_job(params, image=image)
    # Which version of the admin Secret the Job ran with: new credentials mean a new run.
    secret = kube.get(kube_api(stage), "v1", "Secret", params.app.namespace,
                      params.secrets.names.admin)
    version = (secret or {}).get("metadata", {}).get("resourceVersion", "")
    job["metadata"].setdefault("annotations", {})[SECRET_VERSION] = version
    manifests.validate([job], stage.params.cluster.version)
    stage.write_artifact("migrate-job.yaml", manifests.to_yaml([job]))
    return job


def _same_spec(existing: dict, wanted: dict) -> bool:
    have = existing["spec"]["template"]["spec"]["containers"][0]
    want = wanted["spec"]["template"]["spec"]["containers"][0]
    have_secret = (existing["metadata"].get("annotations") or {}).get(SECRET_VERSION)
    want_secret = wanted["metadata"]["annotations"][SECRET_VERSION]
    return ((have.get("image"), have.get("args"), have_secret)
            == (want.get("image"), want.get("args"), want_secret))


def run(stage, job: dict) -> list[Outcome]:
    """Apply the Job (replacing a stale one), wait for Complete, print its logs."""
    api = kube_api(stage)
    params = stage.params
    ns, name, dep = params.app.namespace, job["metadata"]["name"], params.deployment_id
    existing = kube.get(api, "batch/v1", "Job", ns, name)
    kube.require_ours(existing, dep)
    if existing is not None:
        done = kube.job_status(api, ns, name)
        if done.done and _same_spec(existing, job):
            print(f"Job {ns}/{name} already ran this image with these credentials: "
                  f"{done.state}")
            print(kube.logs_for(api, ns, f"job-name={name}", tail=20))
            return stage.show([Outcome("Job", f"{ns}/{name}", "found", detail=done.state)])
        print(f"replacing Job {ns}/{name} ({done.state})")
        kube.delete(api, "batch/v1", "Job", ns, name, dep, wait_s=params.timeouts.job)
    outcome = kube.apply(api, job)
    logs = kube.JobLogs(api, ns, name)
    status = kube.wait_job(api, ns, name, params.timeouts.job, logs)
    logs.capture()
    print(logs.render(tail=50))
    if status.failed:
        print("Job conditions:\n  " + "\n  ".join(kube.job_conditions(api, ns, name)))
        raise TargetError(f"the migration Job {ns}/{name} failed: {status.state}")
    outcome.detail = status.state
    return stage.show([outcome])


def verify_privileges(stage) -> str:
    """Run the restricted-role check in the cluster and return its report."""
    api = kube_api(stage)
    params = stage.params
    ns, dep = params.app.namespace, params.deployment_id
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": VERIFY_JOB, "namespace": ns, "labels": labels.kube_labels(dep)},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels.kube_labels(dep)},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "psql",
                        "image": f"postgres:{params.database.engine_version}",
                        "command": ["sh", "-c", VERIFY_SCRIPT],
                        "env": [{"name": "APP_URL", "valueFrom": {"secretKeyRef": {
                            "name": params.secrets.names.app_db, "key": "database-url"}}}],
                    }],
                },
            },
        },
    }
    manifests.validate([job], params.cluster.version)
    kube.delete(api, "batch/v1", "Job", ns, VERIFY_JOB, dep, wait_s=params.timeouts.job)
    kube.apply(api, job)
    logs = kube.JobLogs(api, ns, VERIFY_JOB)
    status = kube.wait_job(api, ns, VERIFY_JOB, params.timeouts.job, logs)
    logs.capture()
    report = logs.render(tail=20)
    print(report)
    kube.delete(api, "batch/v1", "Job", ns, VERIFY_JOB, dep)
    if status.failed:
        raise TargetError(f"the privilege check failed: {status.state}")
    return Text(report)

