"""The cells of every stage notebook, read by build_notebooks.py."""

# Cells whose output depends on timing (threads, polling, load): nbval runs them but does not
# compare what they print.
VOLATILE = ["nbval-ignore-output"]

COMMON_GROUPS = ["deployment", "aws", "cluster", "timeouts", "gates"]

BEGIN = """from runbook_lib.stage import begin

stage = begin({name!r}, globals())"""

NOTEBOOKS = {
    "00_preflight.ipynb": {
        "title": """# 00 Preflight

Before anything is created, check that the chosen target has what the runbook needs. On the
**eks** target that is AWS credentials (checked through STS), `eksctl`, `helm` and `docker`; on the
**sandbox** target everything runs on this machine, so only the sandbox's own parts are checked.
The parameters are validated too, and every secret source must resolve (the values themselves are
never shown). All problems are reported together in one message.""",
        "groups": COMMON_GROUPS + ["database", "secrets", "images", "app", "autoscaling"],
        "cells": [
            ("md", "Load and validate the parameters, and connect to the target. The lines "
                   "below say which target this run acts on and how it is reached."),
            ("code", BEGIN.format(name="preflight")),
            ("md", "Who does the runbook act as on AWS? On the sandbox this is moto's fixed "
                   "test account."),
            ("code", "from runbook_lib.stages import preflight\n\n"
                     "preflight.caller_identity(stage)"),
            ("md", "Every check at once: AWS access, the command-line tools (or their sandbox "
                   "stand-ins) and the secret sources. A failure lists everything missing."),
            ("code", "found = preflight.check(stage)"),
            ("code", "stage.publish(**{'aws_account': found.get('aws account', '')})\n"
                     "stage.finish()"),
        ],
    },
}

NOTEBOOKS["10_infrastructure.ipynb"] = {
    "title": """# 10 Infrastructure

The walkthrough's infrastructure: an EKS cluster with a managed node group, the `dbos`
namespace, an RDS PostgreSQL instance reachable only from the cluster, the application database
and its restricted role, the Sealed Secrets and KEDA add-ons, and the two ECR images. Every step
is idempotent: run again, it finds what exists and creates nothing. Everything created is tagged
(AWS) or labelled (Kubernetes) as made by this runbook for this deployment, which is what cleanup
looks for.""",
    "groups": COMMON_GROUPS + ["database", "secrets", "images", "app", "addons"],
    "cells": [
        ("md", "Load and validate the parameters and connect to the target."),
        ("code", BEGIN.format(name="infrastructure")),
        ("md", "**Gate.** The next steps create billable resources on the eks target. Nothing "
               "proceeds until the gate is answered: in JupyterLab with the button, headless "
               "with `gates.confirm_create` set to the cluster's name."),
        ("code", "stage.gate(\n    'confirm_create',\n"
                 "    action='create the EKS cluster, its node group, an RDS instance and ECR "
                 "repositories',\n"
                 "    cost='billable on AWS (cluster, nodes, database: dollars per day); free in "
                 "the sandbox',\n)"),
        ("md", "The cluster is described by an eksctl `ClusterConfig` generated from the "
               "parameters: the same file drives `eksctl` on EKS and the stand-in in the "
               "sandbox. It is kept in the record."),
        ("code", "from runbook_lib.stages import infrastructure as infra\n\n"
                 "config_path = infra.cluster_config(stage)"),
        ("md", "Create the cluster, and start RDS as soon as eksctl has made the VPC, so the "
               "database's wait overlaps the control plane's (about 15 minutes on EKS). RDS gets "
               "a DB subnet group on the private subnets, and a security group that admits "
               "5432 only from the cluster's security group. The timeline shows the overlap."),
        ("code", "infra.create_cluster_and_database(stage, config_path)", VOLATILE),
        ("md", "All resources live in one namespace."),
        ("code", "infra.namespace(stage)"),
        ("md", "The RDS instance is private, so the database and the restricted role are created "
               "from a short-lived Job inside the cluster. The passwords reach it through a "
               "Secret that is deleted afterwards; the pod spec, its command line and its log "
               "never hold them. An existing database or role is fine."),
        ("code", "infra.database_and_role(stage)"),
        ("md", "The cluster add-ons, through helm: Sealed Secrets (release `sealed-secrets` in "
               "`kube-system`) and KEDA (release `keda` in `keda`). Their pods must be ready."),
        ("code", "infra.addons(stage)"),
        ("md", "Two ECR repositories, one for the application image and one for the migration "
               "image (only the DBOS CLI)."),
        ("code", "infra.repositories(stage)"),
        ("md", "Log in to the registry (the token is never shown), build both images for "
               "linux/amd64 from `app/`, tag them with the application version and push them. "
               "The record keeps the digests."),
        ("code", "infra.images(stage)"),
        ("code", "stage.finish()"),
    ],
}

NOTEBOOKS["20_secrets.ipynb"] = {
    "title": """# 20 Sealed secrets

The walkthrough's three Secrets: `postgres-admin` (`password`, `database-url` of the admin, for
the migration Job), `dbos-app-db` (`database-url` of the restricted role, for the app), and
`conductor-api-key` (`api-key`, only when Conductor is configured). Values come from the secret
sources, are sealed in Python against the controller's certificate, and are applied as
SealedSecrets; the controller turns them into Secrets. The sealed YAML goes into the record and
is safe to commit. Values are never shown: only names, types and keys.""",
    "groups": COMMON_GROUPS + ["database", "secrets", "app"],
    "cells": [
        ("code", BEGIN.format(name="secrets")),
        ("md", "Fetch the controller's certificate through the Kubernetes API's service proxy "
               "(what `kubeseal --fetch-cert` does). It is public; the record keeps it."),
        ("code", "from runbook_lib.stages import secrets\n\ncert = secrets.certificate(stage)"),
        ("md", "Seal each Secret (strict scope unless the parameters say otherwise) and apply "
               "it. A Secret that already holds the wanted values is left as it is, so a re-run "
               "changes nothing."),
        ("code", "secrets.seal_and_apply(stage, cert)"),
        ("md", "Wait until the controller has produced every Secret with the expected keys "
               "(like `kubectl get secrets -n dbos`)."),
        ("code", "secrets.verify(stage)"),
        ("code", "stage.finish()"),
    ],
}

NOTEBOOKS["30_migration.ipynb"] = {
    "title": """# 30 Database migration

DBOS keeps workflow state in its system tables, which must exist before the app starts. A Job
runs `dbos migrate --app-role dbos_app_role` with the **admin** credentials: it creates or
upgrades the tables and grants the restricted role what it needs. The app then runs as the
restricted role, which can read and write its data but cannot change the schema.""",
    "groups": COMMON_GROUPS + ["database", "secrets", "images", "app"],
    "cells": [
        ("code", BEGIN.format(name="migration")),
        ("md", "Render the walkthrough's Job (backoffLimit 3, restartPolicy OnFailure, the admin "
               "URL from `postgres-admin`), validate it offline against the cluster's schema, "
               "and keep it in the record."),
        ("code", "from runbook_lib.stages import migration\n\njob = migration.render(stage)"),
        ("md", "Run it and wait for Complete; its logs follow. A finished Job with the same "
               "image is left alone on a re-run; otherwise the old Job is deleted and applied "
               "again, as the walkthrough does."),
        ("code", "migration.run(stage, job)", VOLATILE),
        ("md", "Prove the privilege separation from inside the cluster: the restricted role "
               "reads and writes the DBOS tables, and may not create a table."),
        ("code", "migration.verify_privileges(stage)"),
        ("code", "stage.finish()"),
    ],
}

NOTEBOOKS["40_deployment.ipynb"] = {
    "title": """# 40 Application deployment

The app's Deployment and Service, as in the walkthrough: the database URL from `dbos-app-db`,
Conductor when configured, port 8080, readiness and liveness probes on `/healthz`, requests and
limits from the parameters, more than one replica, the executor ID from the pod's name, and the
application version as a label and in the environment. One Deployment per application version
(`dbos-app-v1`), so that upgrades can run two versions side by side.""",
    "groups": COMMON_GROUPS + ["database", "secrets", "images", "app"],
    "cells": [
        ("code", BEGIN.format(name="deployment")),
        ("md", "Render and validate the manifests offline (strict: an unknown field is an "
               "error), and keep them in the record."),
        ("code", "from runbook_lib.stages import deployment\n\n"
                 "objects = deployment.render(stage)"),
        ("md", "Apply them with server-side apply: each object is created, updated or found "
               "unchanged."),
        ("code", "deployment.apply(stage, objects)"),
        ("md", "Follow the rollout until every replica is ready."),
        ("code", "deployment.wait_ready(stage)"),
        ("md", "The last lines of the pods' logs."),
        ("code", "deployment.tail_logs(stage)", VOLATILE),
        ("md", "`GET /healthz` on the Service, through the Kubernetes API's service proxy: the "
               "runbook's port-forward, which needs no local port and works headless."),
        ("code", "deployment.health(stage)"),
        ("code", "stage.finish()"),
    ],
}

NOTEBOOKS["90_cleanup.ipynb"] = {
    "title": """# 90 Cleanup

Take the whole deployment down, in reverse order, and prove that nothing of it remains. Only
what carries this runbook's tags or labels for this deployment is deleted; anything else with a
matching name is left alone and reported. A deployment that was only partly created is fine:
what is missing is reported as absent.""",
    "groups": COMMON_GROUPS + ["database", "images", "app"],
    "cells": [
        ("code", BEGIN.format(name="cleanup")),
        ("md", "**Gate.** This destroys the deployment, its data included (a final RDS snapshot "
               "is kept unless `database.final_snapshot` is false). Headless, "
               "`gates.confirm_cleanup` must equal the cluster's name."),
        ("code", "stage.gate(\n    'confirm_cleanup',\n"
                 "    action='delete the application, the add-ons, the RDS instance, the "
                 "cluster and the ECR repositories',\n"
                 "    cost='destructive: data is lost unless a final snapshot is kept',\n)"),
        ("md", "The application's objects in the cluster, then the add-ons."),
        ("code", "from runbook_lib.stages import cleanup\n\ncleanup.application(stage)"),
        ("code", "cleanup.addons(stage)"),
        ("md", "RDS before the cluster: the instance, its subnet group and its security group "
               "live in the cluster's VPC, which cannot be deleted while they are there."),
        ("code", "cleanup.database(stage)"),
        ("code", "cleanup.cluster(stage)"),
        ("code", "cleanup.repositories(stage)"),
        ("md", "The inventory, through each service's own list calls: nothing tagged for this "
               "deployment may remain."),
        ("code", "cleanup.inventory(stage)"),
        ("code", "stage.finish()"),
    ],
}

NOTEBOOKS["50_autoscaling.ipynb"] = {
    "title": """# 50 Autoscaling and load test

KEDA scales the app on its DBOS queue depth. Its `metrics-api` trigger polls
`/metrics/taskQueue` through the Service's cluster URL and extracts `queue_length`; the HPA that
KEDA creates computes `desired = ceil(queue_length / targetValue)`, with the target equal to the
queue's worker concurrency (2), so each pod runs two workflows at once. The queue length counts
ENQUEUED **and** PENDING workflows: counting only ENQUEUED would drop to zero while every worker
is still busy, and the autoscaler would scale busy pods away.""",
    "groups": COMMON_GROUPS + ["database", "secrets", "images", "app", "autoscaling",
                               "load_test"],
    "cells": [
        ("code", BEGIN.format(name="autoscaling")),
        ("md", """The ScaledObject, as in the walkthrough (polling 15 s, cooldown 60 s, min 1,
max 10, target 2), plus one addition. With `minReplicaCount: 1`, scaling from N down to 1 is the
HPA's decision, not KEDA's: `cooldownPeriod` only governs the step to zero, and the HPA waits
out its scale-down stabilization window, 300 s by default. To get the walkthrough's intended
one-minute scale-down, the ScaledObject sets
`advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds` from
`autoscaling.scale_down_window` (60 s; a few seconds in the sandbox), and KEDA copies it into the
HPA."""),
        ("code", "from runbook_lib.stages import autoscaling\n\n"
                 "scaled_object = autoscaling.render(stage)\n"
                 "autoscaling.apply(stage, scaled_object)"),
        ("md", "KEDA reports the ScaledObject Ready and creates the HPA `keda-hpa-<name>`; check "
               "its minimum, maximum, target and scale-down window."),
        ("code", "autoscaling.verify(stage)"),
        ("md", "The load test: enqueue N workflows of S seconds (the walkthrough uses 10 × 60 s; "
               "the sandbox something shorter), then follow queue depth and desired and ready "
               "replicas until the queue drains and the replicas are back at the minimum. Two "
               "checks: the peak matches ceil(queue / target) clamped to the maximum (within "
               "the HPA's 10% tolerance), and every workflow ended SUCCESS."),
        ("code", "autoscaling.load_test(stage)", VOLATILE),
        ("code", "stage.finish()"),
    ],
}

NOTEBOOKS["60_upgrade.ipynb"] = {
    "title": """# 60 Versioned upgrade

DBOS stores an application version with every workflow, and a worker only dequeues and recovers
workflows of its own version. Upgrading workflow code therefore runs the new version **beside**
the old one: v2 gets its own Deployment, the Service selector (and the ScaledObject) move to v2
so that new requests and new workflows go there, v1 keeps running until it has no ENQUEUED or
PENDING workflows of its version, and only then is v1 deleted.

**The alternative, workflow patching**, keeps one Deployment and puts both code paths in it:
inside a workflow, `DBOS.patch("name")` tells a recovering workflow which path it took, and
`DBOS.deprecate_patch` retires the old path later. Choose versioning when a change is large or
touches many workflows, when you want a clean rollback (the old Deployment is still there), or
when workflows are short enough that draining is quick. Choose patching when workflows run for
days or weeks (draining would keep old pods alive that long), when the change is small and
local, or when running two Deployments costs too much. Patching needs care in the code;
versioning needs care in operations.""",
    "groups": COMMON_GROUPS + ["database", "secrets", "images", "app", "autoscaling",
                               "upgrade"],
    "cells": [
        ("code", BEGIN.format(name="upgrade")),
        ("md", "Start a few long workflows on v1, so the upgrade has in-flight work to drain."),
        ("code", "from runbook_lib.stages import upgrade\n\n"
                 "inflight = upgrade.start_inflight(stage)"),
        ("md", "Build and push the v2 image (the same code here; a real upgrade changes it)."),
        ("code", "upgrade.build_new_image(stage)"),
        ("md", "Deploy v2 as its own Deployment beside v1 and wait until it is ready."),
        ("code", "upgrade.deploy_new_version(stage)"),
        ("md", "Point the Service selector and the ScaledObject at v2 only. From here on, new "
               "requests and new workflows go to v2."),
        ("code", "upgrade.switch_traffic(stage)"),
        ("md", "Keep v1 while it has ENQUEUED or PENDING workflows of its version; the counts "
               "it waited on go into the record."),
        ("code", "upgrade.drain_old_version(stage, inflight)", VOLATILE),
        ("md", "v1 has nothing left to do: delete its Deployment."),
        ("code", "upgrade.retire_old_version(stage)"),
        ("md", "New requests reach only v2."),
        ("code", "upgrade.verify_new_version_serves(stage)"),
        ("code", "stage.finish()"),
    ],
}
