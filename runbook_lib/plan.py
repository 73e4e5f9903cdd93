"""The plan: what each stage would create or change, from the parameters alone.

``python -m runbook_lib plan -f FILE`` validates the parameters (one error listing every
problem) and prints, stage by stage, the resources the runbook would create or change, with their
names. It calls no API and creates nothing; running a stage then reports for each resource
whether it was created or already there.
"""

from __future__ import annotations

from runbook_lib import manifests
from runbook_lib import parameters as params_mod
from runbook_lib.stage import STAGES


def steps(p: params_mod.Parameters) -> dict[str, list[str]]:
    region, dep = p.aws.region, p.deployment_id
    ns = p.app.namespace
    names = p.secrets.names
    version, new = p.app.version, p.upgrade.to_version
    return {
        "preflight": [f"check AWS credentials (STS) in {region}, the tools, every secret "
                      "source"],
        "infrastructure": [
            f"EKS cluster {p.cluster.name} (Kubernetes {p.cluster.version}), managed node group "
            f"{p.cluster.nodegroup}: {p.cluster.nodes} x {p.cluster.instance_type}, VPC "
            f"{p.cluster.vpc_cidr} (eksctl ClusterConfig kept in the record)",
            f"DB subnet group {p.database.subnet_group} on the cluster's private subnets",
            f"security group {p.database.security_group}: TCP {p.database.port} only from the "
            "cluster's security group",
            f"RDS instance {p.database.instance_id}: {p.database.instance_class}, PostgreSQL "
            f"{p.database.engine_version}, {p.database.allocated_storage_gib} GiB, encrypted, "
            "not public",
            f"namespace {ns}",
            f"database {p.database.name} and login role {p.database.app_role} (a Job in the "
            "cluster)",
            "helm releases kube-system/sealed-secrets and keda/keda",
            f"ECR repositories {p.images.app_repository}, {p.images.migrate_repository}; "
            f"images tagged {version} ({p.images.platform})",
        ],
        "secrets": [f"SealedSecrets {names.admin}, {names.app_db}, and {names.conductor} when "
                    f"a Conductor key is given, in {ns} ({p.secrets.scope} scope)"],
        "migration": [f"Job {ns}/{p.app.migrate_job}: dbos migrate --app-role "
                      f"{p.database.app_role}", "a Job that checks the role's privileges"],
        "deployment": [
            f"Deployment {ns}/{manifests.deployment_name(p, version)}: {p.app.replicas} "
            f"replicas, port {p.app.port}, probes on /healthz",
            f"Service {ns}/{p.app.name} -> version {version}"],
        "autoscaling": [
            f"ScaledObject {ns}/{p.autoscaling.scaled_object}: target {p.autoscaling.target_value}"
            f", {p.autoscaling.min_replicas}..{p.autoscaling.max_replicas} replicas, polling "
            f"{p.autoscaling.polling_interval:g} s, scale-down window "
            f"{p.autoscaling.scale_down_window:g} s",
            f"load test: {p.load_test.workflows} workflows of {p.load_test.seconds:g} s"],
        "upgrade": [f"Deployment {ns}/{manifests.deployment_name(p, new)} beside "
                    f"{manifests.deployment_name(p, version)}; Service and ScaledObject moved to "
                    f"{new}; {version} deleted once drained"],
        "cleanup": [f"delete everything tagged or labelled for deployment {dep} (final RDS "
                    f"snapshot: {'yes' if p.database.final_snapshot else 'no'}); only with "
                    "gates.confirm_cleanup set to the cluster's name"],
    }


def render(target_file, overrides=None) -> str:
    params = params_mod.load(target_file, overrides)
    lines = [f"Plan for deployment {params.deployment_id} on target {params.target} "
             f"(parameters valid; nothing was created or called)"]
    for name, items in steps(params).items():
        number, title = STAGES[name]
        lines.append(f"\n{number} {title}")
        lines += [f"  + {item}" for item in items]
    return "\n".join(lines)
