"""Infrastructure: the EKS cluster, the namespace, RDS, the database and role, add-ons, images.

Follows the walkthrough's Infrastructure section. The cluster is created from an eksctl
ClusterConfig file generated from the parameters (kept in the record). RDS starts as soon as
eksctl has made the VPC, so that its wait overlaps the EKS control plane's; the record shows the
overlap. The database and the restricted role are created from a short-lived Job inside the
cluster (the instance is private), with the passwords passed through a Secret. Every step is
idempotent and says whether it created, found or skipped each resource.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from runbook_lib import aws, eksctl, kube, labels, manifests
from runbook_lib.errors import TargetError
from runbook_lib.outcome import Outcome
from runbook_lib.parameters import PROJECT_ROOT
from runbook_lib.progress import Status, wait_for
from runbook_lib.secrets_resolver import secret
from runbook_lib.stages.common import admin_url, kube_api

log = logging.getLogger("runbook_lib.stages.infrastructure")

APP_DIR = PROJECT_ROOT / "app"
DB_SETUP_SECRET = "dbos-db-setup"
SEALED_SECRETS = {"release": "sealed-secrets", "chart": "sealed-secrets/sealed-secrets",
                  "namespace": "kube-system",
                  "repo_url": "https://bitnami-labs.github.io/sealed-secrets",
                  "selector": "app.kubernetes.io/name=sealed-secrets"}
KEDA = {"release": "keda", "chart": "kedacore/keda", "namespace": "keda",
        "repo_url": "https://kedacore.github.io/charts", "selector": None}


def _aws(stage):
    return stage.target.aws_session, stage.target.aws_endpoint_url


# The cluster and RDS, overlapping ----------------------------------------------------------

def cluster_config(stage) -> Path:
    """Write the eksctl ClusterConfig for this deployment into the record and the state dir."""
    p = stage.params
    config = eksctl.cluster_config(
        cluster=p.cluster.name, region=p.aws.region, version=p.cluster.version,
        nodegroup=p.cluster.nodegroup, instance_type=p.cluster.instance_type,
        nodes=p.cluster.nodes, min_nodes=p.cluster.min_nodes, max_nodes=p.cluster.max_nodes,
        deployment=p.deployment_id, vpc_cidr=p.cluster.vpc_cidr,
    )
    text = eksctl.render(config)
    stage.write_artifact("eksctl-cluster.yaml", text)
    path = stage.target.state_dir / "eksctl-cluster.yaml"
    path.write_text(text)
    print(text)
    return path


class Timeline:
    """When each step started and ended, to show that RDS overlapped the cluster."""

    def __init__(self):
        self.start = time.monotonic()
        self.events: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def mark(self, what: str) -> None:
        with self._lock:
            self.events.append((time.monotonic() - self.start, what))
        log.info("[%6.1f s] %s", time.monotonic() - self.start, what)

    def at(self, what: str) -> float:
        return next(t for t, w in self.events if w == what)

    def table(self) -> str:
        lines = ["| t (s) | event |", "|---:|---|"]
        lines += [f"| {t:.1f} | {w} |" for t, w in sorted(self.events)]
        return "\n".join(lines)


def _create_cluster(stage, config_path: Path, timeline: Timeline, errors: list) -> None:
    p, target = stage.params, stage.target
    session, endpoint = _aws(stage)
    try:
        timeline.mark("cluster: started")
        if aws.cluster_exists(session, endpoint, p.cluster.name):
            target.cluster_tool.write_kubeconfig(p.cluster.name, p.aws.region, target.kubeconfig)
            timeline.mark("cluster: found (kubeconfig written)")
        else:
            target.cluster_tool.create_cluster(config_path, target.kubeconfig)
            timeline.mark("cluster: created")
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread, re-raised there
        timeline.mark("cluster: failed")
        errors.append(exc)


def create_cluster_and_database(stage, config_path: Path) -> list[Outcome]:
    """Create the cluster and, as soon as its VPC exists, the RDS instance; wait for both."""
    p, target = stage.params, stage.target
    session, endpoint = _aws(stage)
    dep = p.deployment_id
    cluster_found = aws.cluster_exists(session, endpoint, p.cluster.name)
    timeline = Timeline()
    errors: list[BaseException] = []
    worker = threading.Thread(target=_create_cluster, name="cluster",
                              args=(stage, config_path, timeline, errors), daemon=True)
    worker.start()
    outcomes = [Outcome("EKS cluster", p.cluster.name, "found" if cluster_found else "created")]

    # RDS needs only the VPC and its private subnets, which eksctl makes first.
    network = aws.wait_for_vpc(session, endpoint, p.cluster.name,
                               timeout_s=p.timeouts.cluster, interval_s=2)
    timeline.mark(f"VPC {network.vpc_id} found with {len(network.private_subnet_ids)} "
                  "private subnets")
    db = p.database
    outcomes.append(aws.ensure_db_subnet_group(session, endpoint, name=db.subnet_group,
                                               subnet_ids=network.private_subnet_ids,
                                               deployment=dep))
    security_group = aws.ensure_rds_security_group(session, endpoint, name=db.security_group,
                                                   vpc_id=network.vpc_id, deployment=dep,
                                                   port=db.port)
    outcomes.append(security_group)
    timeline.mark("RDS: creation started")
    outcomes.append(aws.ensure_db_instance(
        session, endpoint, identifier=db.instance_id, instance_class=db.instance_class,
        engine_version=db.engine_version, allocated_storage=db.allocated_storage_gib,
        master_username=db.master_username,
        master_password=secret(target, "postgres_password"),
        subnet_group=db.subnet_group, security_group=security_group.id, deployment=dep,
        port=db.port,
    ))

    # 5432 only from the cluster's security group, which exists once the control plane does.
    cluster_sg = aws.wait_for_cluster_security_group(session, endpoint, p.cluster.name,
                                                     network.vpc_id,
                                                     timeout_s=p.timeouts.cluster, interval_s=2)
    outcomes.append(aws.ensure_rds_security_group(session, endpoint, name=db.security_group,
                                                  vpc_id=network.vpc_id, deployment=dep,
                                                  source_group_id=cluster_sg, port=db.port))
    host, port = aws.wait_db_available(session, endpoint, identifier=db.instance_id,
                                       timeout_s=p.timeouts.rds, interval_s=2)
    timeline.mark("RDS: available")

    worker.join(timeout=p.timeouts.cluster)
    if worker.is_alive():
        raise TargetError(f"the cluster {p.cluster.name} was not created within "
                          f"{p.timeouts.cluster:g} s")
    if errors:
        raise errors[0]

    _report_overlap(stage, timeline)
    stage.publish(cluster=p.cluster.name, vpc_id=network.vpc_id, cluster_security_group=cluster_sg,
                  rds_endpoint=f"{host}:{port}", kubeconfig=str(target.kubeconfig))
    return stage.show(outcomes)


def _report_overlap(stage, timeline: Timeline) -> None:
    names = [w for _, w in timeline.events]
    cluster_end = next((w for w in names if w.startswith("cluster: ") and w != "cluster: started"),
                       None)
    text = "## Cluster and RDS timeline\n\n" + timeline.table() + "\n"
    if cluster_end:
        rds = (timeline.at("RDS: creation started"), timeline.at("RDS: available"))
        eks = (timeline.at("cluster: started"), timeline.at(cluster_end))
        overlap = max(0.0, min(rds[1], eks[1]) - max(rds[0], eks[0]))
        summary = (f"RDS {rds[0]:.1f}-{rds[1]:.1f} s, cluster {eks[0]:.1f}-{eks[1]:.1f} s: "
                   f"RDS overlapped the cluster for {overlap:.1f} s")
        text += f"\n{summary}\n"
        print(summary)
        stage.publish(rds_cluster_overlap_s=f"{overlap:.1f}")
    stage.write_artifact("timeline.md", text)


# Inside the cluster -------------------------------------------------------------------------

def namespace(stage) -> list[Outcome]:
    p = stage.params
    return stage.show([kube.ensure_namespace(kube_api(stage), p.app.namespace,
                                             p.deployment_id)])


def database_and_role(stage) -> list[Outcome]:
    """Create the database and the restricted role from a short-lived Job in the cluster."""
    p = stage.params
    api = kube_api(stage)
    ns, dep = p.app.namespace, p.deployment_id
    from kubernetes import client

    core = client.CoreV1Api(api)
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=DB_SETUP_SECRET, namespace=ns,
                                     labels=labels.kube_labels(dep)),
        string_data={"admin-url": admin_url(stage, "postgres"),
                     "app-role-password": secret(stage.target, "app_role_password")},
    )
    kube.delete(api, "v1", "Secret", ns, DB_SETUP_SECRET, dep)
    core.create_namespaced_secret(ns, body)
    job = manifests.db_setup(p, image=f"postgres:{p.database.engine_version}",
                             secret_name=DB_SETUP_SECRET)
    manifests.validate(job, p.cluster.version)
    stage.write_artifact("db-setup-job.yaml", manifests.to_yaml(job))
    name = job[0]["metadata"]["name"]
    try:
        kube.delete(api, "batch/v1", "Job", ns, name, dep, wait_s=p.timeouts.job)
        kube.apply(api, job[0])
        logs = kube.JobLogs(api, ns, name)
        status = kube.wait_job(api, ns, name, p.timeouts.job, logs)
        logs.capture()
        report = logs.render(tail=20)
        print(report)
        if status.failed:
            raise TargetError(f"the database setup Job failed: {status.state}")
    finally:
        kube.delete(api, "batch/v1", "Job", ns, name, dep)
        kube.delete(api, "v1", "Secret", ns, DB_SETUP_SECRET, dep)
    outcomes = []
    for line in report.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] in ("database", "role") and words[2] in ("created",
                                                                                "found"):
            kind = "PostgreSQL database" if words[0] == "database" else "PostgreSQL role"
            outcomes.append(Outcome(kind, words[1], words[2]))
    return stage.show(outcomes)


def addons(stage) -> list[Outcome]:
    """Sealed Secrets and KEDA through helm, then wait until their pods are ready."""
    p, target = stage.params, stage.target
    outcomes = []
    for addon, version in ((SEALED_SECRETS, p.addons.sealed_secrets_chart_version),
                           (KEDA, p.addons.keda_chart_version)):
        result = target.helm.upgrade_install(
            addon["release"], addon["chart"], namespace=addon["namespace"],
            repo_url=addon["repo_url"], kubeconfig=target.kubeconfig, version=version,
            create_namespace=addon["namespace"] != "kube-system",
            timeout_s=int(p.timeouts.addons),
        )
        action = {"installed": "created", "upgraded": "updated"}.get(result, "found")
        outcomes.append(Outcome("helm release", f"{addon['namespace']}/{addon['release']}",
                                action, detail=addon["chart"]))
    stage.show(outcomes)
    api = kube_api(stage)
    for addon in (SEALED_SECRETS, KEDA):
        wait_pods_ready(api, addon["namespace"], addon["selector"], p.timeouts.addons)
    return outcomes


def _pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions", []))


def wait_pods_ready(api, namespace: str, selector: str | None, timeout_s: float) -> None:
    def check() -> Status:
        pods = kube.list_objects(api, "v1", "Pod", namespace, selector)
        ready = [p for p in pods if _pod_ready(p)]
        state = f"{len(ready)}/{len(pods)} pods ready"
        return Status(bool(pods) and len(ready) == len(pods), state)

    wait_for(f"pods in {namespace}" + (f" ({selector})" if selector else ""), check,
             timeout_s, 0.5)
    for pod in kube.list_objects(api, "v1", "Pod", namespace, selector):
        print(f"  {namespace}/{pod['metadata']['name']}: "
              f"{(pod.get('status') or {}).get('phase')}, ready")


# Images ----------------------------------------------------------------------------------------

IMAGES = (("app_repository", "Dockerfile"), ("migrate_repository", "Dockerfile.migrate"))


def repositories(stage) -> list[Outcome]:
    p = stage.params
    session, endpoint = _aws(stage)
    return stage.show([
        aws.ensure_repository(session, endpoint, name=getattr(p.images, field),
                              deployment=p.deployment_id)
        for field, _ in IMAGES
    ])


def images(stage, version: str | None = None,
           which: tuple[str, ...] = ("app_repository", "migrate_repository")) -> list[Outcome]:
    """Log in to the registry, build the images for linux/amd64, push, record the digests.

    Images are tagged with the application version (``version``, default app.version).
    """
    p, target = stage.params, stage.target
    version = version or p.app.version
    session, endpoint = _aws(stage)
    login = aws.registry_login(session, endpoint)
    target.images.login(login.registry, login.username, login.password)
    print(f"logged in to {login.registry} as {login.username} (token not shown)")
    outcomes, published = [], {}
    ecr = target.client("ecr")
    for field, dockerfile in IMAGES:
        if field not in which:
            continue
        repository = getattr(p.images, field)
        uri = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0][
            "repositoryUri"]
        ref = f"{uri}:{version}"
        before = aws.image_digest(session, endpoint, repository=repository, tag=version)
        target.images.build(APP_DIR, APP_DIR / dockerfile, ref, platform=p.images.platform)
        digest = target.images.push(ref)
        action = "found" if before == digest else ("updated" if before else "created")
        outcomes.append(Outcome("image", ref, action, detail=digest))
        published[f"{field.removesuffix('_repository')}_image_{version}"] = f"{ref}@{digest}"
    stage.publish(**published)
    return stage.show(outcomes)
