"""Cleanup: take the deployment down, and prove that nothing of it remains.

Reverse order of creation: the application's objects (ScaledObject, Deployments, Service, Jobs,
SealedSecrets; the namespace when the runbook created it), the add-ons, then RDS (instance with a
final snapshot unless the parameters skip it, its security group, its subnet group), the cluster,
and the ECR repositories. RDS goes before the cluster, unlike the walkthrough's listing: the
cluster's VPC cannot be deleted while the RDS instance, its subnet group and its security group
(which names the cluster's security group as its source) are still in it.

Guarded by a gate (the cluster's name must be typed or set). Tolerates partial deployments: what
is missing is reported as absent. Refuses to delete anything without the runbook's tags or
labels. Ends with an inventory, through each service's own list calls, of what is left.
"""

from __future__ import annotations

import logging

from runbook_lib import aws, kube, labels
from runbook_lib.errors import TargetError
from runbook_lib.outcome import Outcome, Report
from runbook_lib.stages.common import kube_api
from runbook_lib.stages.infrastructure import KEDA, SEALED_SECRETS

log = logging.getLogger("runbook_lib.stages.cleanup")


def _cluster_reachable(stage) -> bool:
    session, endpoint = stage.target.aws_session, stage.target.aws_endpoint_url
    if not aws.cluster_exists(session, endpoint, stage.params.cluster.name):
        return False
    if not stage.target.kubeconfig.exists():
        stage.target.cluster_tool.write_kubeconfig(stage.params.cluster.name,
                                                   stage.params.aws.region,
                                                   stage.target.kubeconfig)
    return True


def application(stage) -> list[Outcome]:
    """Delete the application's objects in the cluster (only those labelled as ours)."""
    p = stage.params
    if not _cluster_reachable(stage):
        return stage.show([Outcome("Kubernetes objects", p.app.namespace, "absent",
                                   detail="no cluster")])
    api = kube_api(stage)
    ns, dep = p.app.namespace, p.deployment_id
    selector = labels.kube_selector(dep)
    outcomes = []
    order = (("keda.sh/v1alpha1", "ScaledObject"), ("apps/v1", "Deployment"),
             ("v1", "Service"), ("batch/v1", "Job"), ("bitnami.com/v1alpha1", "SealedSecret"),
             ("v1", "Secret"))
    for api_version, kind in order:
        try:
            items = kube.list_objects(api, api_version, kind, ns, selector)
        except TargetError:
            items = []  # the kind is not served (its add-on is gone): nothing of it to delete
        for item in items:
            outcomes.append(kube.delete(api, api_version, kind, ns, item["metadata"]["name"],
                                        dep))
    outcomes.append(kube.delete(api, "v1", "Namespace", None, ns, dep,
                                wait_s=p.timeouts.cleanup))
    if outcomes[-1].action == "refused":
        outcomes[-1].detail = "not created by this runbook: kept (its own objects were deleted)"
    return stage.show(outcomes)


def addons(stage) -> list[Outcome]:
    target = stage.target
    if not _cluster_reachable(stage):
        return stage.show([Outcome("helm release", "add-ons", "absent", detail="no cluster")])
    outcomes = []
    for addon in (KEDA, SEALED_SECRETS):
        name = f"{addon['namespace']}/{addon['release']}"
        removed = target.helm.uninstall(addon["release"], namespace=addon["namespace"],
                                        kubeconfig=target.kubeconfig)
        outcomes.append(Outcome("helm release", name, "deleted" if removed else "absent"))
    return stage.show(outcomes)


def database(stage) -> list[Outcome]:
    """The RDS instance (final snapshot unless skipped), its security group and subnet group."""
    p = stage.params
    session, endpoint = stage.target.aws_session, stage.target.aws_endpoint_url
    outcomes = aws.cleanup(
        session, endpoint, deployment=p.deployment_id, db_instance=p.database.instance_id,
        rds_security_group=p.database.security_group, db_subnet_group=p.database.subnet_group,
        repositories=[], skip_final_snapshot=not p.database.final_snapshot,
        timeout_s=p.timeouts.cleanup, interval_s=2,
    )
    return stage.show(outcomes)


def cluster(stage) -> list[Outcome]:
    """Delete the cluster with the cluster tool, if it exists and carries our tags."""
    p, target = stage.params, stage.target
    session, endpoint = target.aws_session, target.aws_endpoint_url
    name = p.cluster.name
    if not aws.cluster_exists(session, endpoint, name):
        return stage.show([Outcome("EKS cluster", name, "absent")])
    tags = aws.describe_cluster(session, endpoint, name).get("tags", {})
    if not labels.is_ours_aws(tags, p.deployment_id):
        return stage.show([Outcome("EKS cluster", name, "refused",
                                   detail="not tagged as created by this runbook")])
    target.cluster_tool.delete_cluster(name, p.aws.region)
    if target.kubeconfig.exists():
        target.kubeconfig.unlink()
    return stage.show([Outcome("EKS cluster", name, "deleted")])


def repositories(stage) -> list[Outcome]:
    p = stage.params
    session, endpoint = stage.target.aws_session, stage.target.aws_endpoint_url
    names = [p.images.app_repository, p.images.migrate_repository]
    return stage.show(aws.delete_repositories(session, endpoint, names=names,
                                              deployment=p.deployment_id))


def inventory(stage) -> list:
    """What is left, through each service's own list calls; raise if anything of ours remains.

    A final RDS snapshot is kept on purpose and reported as such.
    """
    p = stage.params
    session, endpoint = stage.target.aws_session, stage.target.aws_endpoint_url
    names = [p.cluster.name, p.database.instance_id, p.database.security_group,
             p.database.subnet_group, p.images.app_repository, p.images.migrate_repository]
    items = aws.inventory(session, endpoint, p.deployment_id, p.aws.region, names=names)
    kept = [i for i in items if i.ours and "snapshot" in i.kind.lower()]
    left = [i for i in items if i.ours and i not in kept]
    others = [i for i in items if not i.ours]
    for item in kept:
        print(f"kept on purpose: {item.line()}")
    for item in others:
        print(f"not ours, left alone: {item.line()}")
    if left:
        lines = "\n".join(f"  - {i.line()}" for i in left)
        raise TargetError(f"{len(left)} resource(s) of this deployment remain:\n{lines}")
    print(f"Inventory: nothing tagged for deployment {p.deployment_id} remains"
          + (f" (apart from {len(kept)} final snapshot(s) kept on purpose)" if kept else "")
          + ".")
    stage.publish(remaining="0", snapshots_kept=str(len(kept)))
    return Report(kept=[i.name for i in kept], others=[i.name for i in others])

