"""The walkthrough's infrastructure and cleanup, end to end on a real moto server.

Covers a full run and its cleanup down to an empty inventory, a second run that creates
nothing, a deployment stopped half way and cleaned up completely (beside another deployment
that cleanup leaves alone), and look-alike resources (right name, no tags) that are refused,
survive cleanup and, as on AWS, keep the cluster's VPC from being deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from runbook_lib import aws, eksctl, labels
from runbook_lib.errors import Refusal, TargetError

from .common import CLUSTER, DEPLOYMENT, REGION

FAST = {"timeout_s": 20, "interval_s": 0.05}


@dataclass(frozen=True)
class Names:
    """The names one deployment uses, as its parameters would give them."""

    deployment: str
    cluster: str
    db: str
    subnet_group: str
    security_group: str
    repos: tuple[str, ...]


WALKTHROUGH = Names(DEPLOYMENT, CLUSTER, "dbos-app-pg", "dbos-app-db", "dbos-app-rds",
                    ("dbos-app", "dbos-migrate"))
HALF = Names("half-dep", "half-cluster", "half-pg", "half-db", "half-rds",
             ("half-app", "half-migrate"))
DB, SUBNET_GROUP, RDS_SG, REPOS = (WALKTHROUGH.db, WALKTHROUGH.subnet_group,
                                   WALKTHROUGH.security_group, WALKTHROUGH.repos)


def provision(session, url, names: Names = WALKTHROUGH, *, stop_after: str = "") -> list:
    """The Infrastructure section as stage code runs it; ``stop_after`` ends it early."""
    network = aws.wait_for_vpc(session, url, names.cluster, **FAST)
    outcomes = [aws.ensure_db_subnet_group(
        session, url, name=names.subnet_group, subnet_ids=network.private_subnet_ids,
        deployment=names.deployment)]
    group = aws.ensure_rds_security_group(
        session, url, name=names.security_group, vpc_id=network.vpc_id,
        deployment=names.deployment)
    outcomes.append(group)
    if stop_after == "security group":
        return outcomes
    outcomes.append(aws.ensure_db_instance(
        session, url, identifier=names.db, instance_class="db.t4g.micro", engine_version="16",
        allocated_storage=20, master_username="postgres", master_password="Walkthrough-pw-1",
        subnet_group=names.subnet_group, security_group=group.id,
        deployment=names.deployment))
    cluster_group = aws.wait_for_cluster_security_group(session, url, names.cluster,
                                                        network.vpc_id, **FAST)
    outcomes.append(aws.ensure_rds_security_group(
        session, url, name=names.security_group, vpc_id=network.vpc_id,
        deployment=names.deployment, source_group_id=cluster_group))
    address, port = aws.wait_db_available(session, url, identifier=names.db, **FAST)
    assert address and port == 5432
    for repo in names.repos:
        outcomes.append(aws.ensure_repository(session, url, name=repo,
                                              deployment=names.deployment))
    return outcomes


def teardown(session, url, standin, names: Names = WALKTHROUGH) -> list:
    """The Cleanup section, RDS and ECR first, then the cluster."""
    outcomes = aws.cleanup(
        session, url, deployment=names.deployment, db_instance=names.db,
        rds_security_group=names.security_group, db_subnet_group=names.subnet_group,
        repositories=names.repos, skip_final_snapshot=True, **FAST)
    standin.delete_cluster(names.cluster, REGION)
    return outcomes


def create_cluster(standin, names: Names, folder) -> None:
    config = eksctl.cluster_config(
        cluster=names.cluster, region=REGION, version="1.31", nodegroup="default",
        instance_type="t3.medium", nodes=2, min_nodes=2, max_nodes=2,
        deployment=names.deployment)
    standin.create_cluster(eksctl.write(config, folder / f"{names.cluster}.yaml"),
                           folder / f"{names.cluster}.kubeconfig")


def test_full_run_rerun_half_run_and_cleanup(session, moto, standin, cluster, tmp_path):
    first = provision(session, moto)
    assert [(o.kind, o.action) for o in first] == [
        ("DB subnet group", "created"),
        ("security group", "created"),
        ("RDS instance", "created"),
        ("security group", "updated"),
        ("ECR repository", "created"),
        ("ECR repository", "created"),
    ]

    # The instance is private, encrypted, PostgreSQL, tagged; its group admits only the cluster.
    rds = aws.client(session, "rds", moto)
    instance = rds.describe_db_instances(DBInstanceIdentifier=DB)["DBInstances"][0]
    assert instance["Engine"] == "postgres" and instance["PubliclyAccessible"] is False
    assert instance["StorageEncrypted"] is True
    assert labels.is_ours_aws(instance["TagList"], DEPLOYMENT)
    ec2 = aws.client(session, "ec2", moto)
    cluster_group = aws.find_cluster_security_group(session, moto, CLUSTER)
    (rule,) = ec2.describe_security_groups(GroupIds=[first[1].id])["SecurityGroups"][0][
        "IpPermissions"]
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432)
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [cluster_group]
    assert rule["IpRanges"] == []

    # A second run creates nothing.
    second = provision(session, moto)
    assert {o.action for o in second} == {"found"}, second

    # Someone opens the group to the world; the next run puts it back.
    ec2.authorize_security_group_ingress(GroupId=first[1].id, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432,
        "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    again = aws.ensure_rds_security_group(
        session, moto, name=RDS_SG, vpc_id=aws.find_cluster_vpc(session, moto, CLUSTER),
        deployment=DEPLOYMENT, source_group_id=cluster_group)
    assert again.action == "updated"
    (rule,) = ec2.describe_security_groups(GroupIds=[first[1].id])["SecurityGroups"][0][
        "IpPermissions"]
    assert rule["IpRanges"] == [] and len(rule["UserIdGroupPairs"]) == 1

    inventory = aws.inventory(session, moto, DEPLOYMENT, REGION)
    kinds = {item.kind for item in inventory}
    assert {"EKS cluster", "EKS node group", "VPC", "subnet", "security group", "RDS instance",
            "DB subnet group", "ECR repository", "IAM role", "CloudFormation stack"} <= kinds
    assert all(item.ours for item in inventory)

    # A second deployment stopped half way (cluster, subnet group, security group) is cleaned
    # up completely, and cleaning it up leaves the first deployment alone.
    create_cluster(standin, HALF, tmp_path)
    provision(session, moto, HALF, stop_after="security group")
    outcomes = teardown(session, moto, standin, HALF)
    assert [(o.kind, o.action) for o in outcomes] == [
        ("RDS instance", "absent"),
        ("security group", "deleted"),
        ("DB subnet group", "deleted"),
        ("ECR repository", "absent"),
        ("ECR repository", "absent"),
    ]
    assert aws.inventory(session, moto, HALF.deployment, REGION) == []
    assert aws.inventory(session, moto, DEPLOYMENT, REGION) == inventory

    outcomes = teardown(session, moto, standin)
    assert [(o.kind, o.action) for o in outcomes] == [
        ("RDS instance", "deleted"),
        ("RDS instance", "waited"),
        ("security group", "deleted"),
        ("DB subnet group", "deleted"),
        ("ECR repository", "deleted"),
        ("ECR repository", "deleted"),
    ]
    assert aws.inventory(session, moto, DEPLOYMENT, REGION) == []

    # Cleaning up again finds nothing to do.
    outcomes = teardown(session, moto, standin)
    assert {o.action for o in outcomes} == {"absent"}
    assert [o.action for o in standin.outcomes] == ["absent"]


def test_look_alikes_are_refused_survive_cleanup_and_hold_the_vpc(
    session, moto, standin, cluster
):
    network = aws.wait_for_vpc(session, moto, CLUSTER, **FAST)
    ec2 = aws.client(session, "ec2", moto)
    ecr = aws.client(session, "ecr", moto)
    rds = aws.client(session, "rds", moto)
    # Made by hand: right names, no tags (or another deployment's).
    hand_group = ec2.create_security_group(
        GroupName=RDS_SG, Description="made by hand", VpcId=network.vpc_id)["GroupId"]
    ecr.create_repository(repositoryName="dbos-app")
    ecr.create_repository(repositoryName="dbos-migrate", tags=labels.aws_tag_list("other"))
    rds.create_db_subnet_group(DBSubnetGroupName=SUBNET_GROUP, DBSubnetGroupDescription="hand",
                               SubnetIds=list(network.private_subnet_ids))

    with pytest.raises(Refusal, match="does not carry"):
        aws.ensure_repository(session, moto, name="dbos-app", deployment=DEPLOYMENT)
    with pytest.raises(Refusal, match="'other'"):
        aws.ensure_repository(session, moto, name="dbos-migrate", deployment=DEPLOYMENT)
    with pytest.raises(Refusal):
        aws.ensure_rds_security_group(session, moto, name=RDS_SG, vpc_id=network.vpc_id,
                                      deployment=DEPLOYMENT)
    with pytest.raises(Refusal):
        aws.ensure_db_subnet_group(session, moto, name=SUBNET_GROUP,
                                   subnet_ids=network.private_subnet_ids, deployment=DEPLOYMENT)

    outcomes = aws.cleanup(
        session, moto, deployment=DEPLOYMENT, db_instance=DB, rds_security_group=RDS_SG,
        db_subnet_group=SUBNET_GROUP, repositories=REPOS, skip_final_snapshot=True, **FAST)
    assert [(o.kind, o.action) for o in outcomes] == [
        ("RDS instance", "absent"),
        ("security group", "refused"),
        ("DB subnet group", "refused"),
        ("ECR repository", "refused"),
        ("ECR repository", "refused"),
    ]
    assert ec2.describe_security_groups(GroupIds=[hand_group])["SecurityGroups"]
    assert len(ecr.describe_repositories()["repositories"]) == 2
    assert rds.describe_db_subnet_groups(DBSubnetGroupName=SUBNET_GROUP)["DBSubnetGroups"]

    # The inventory shows them, as not ours, when asked about those names.
    names = {RDS_SG, SUBNET_GROUP, *REPOS}
    strangers = [i for i in aws.inventory(session, moto, DEPLOYMENT, REGION, names=names)
                 if not i.ours]
    assert sorted((i.kind, i.name) for i in strangers) == [
        ("DB subnet group", SUBNET_GROUP),
        ("ECR repository", "dbos-app"),
        ("ECR repository", "dbos-migrate"),
        ("security group", RDS_SG),
    ]

    # As on AWS, the cluster cannot go while they occupy its VPC; nothing is deleted then.
    with pytest.raises(TargetError, match="still holds"):
        standin.delete_cluster(CLUSTER, REGION)
    assert aws.cluster_exists(session, moto, CLUSTER)

    # Once their owner removes them, the cluster and everything eksctl made go.
    ec2.delete_security_group(GroupId=hand_group)
    rds.delete_db_subnet_group(DBSubnetGroupName=SUBNET_GROUP)
    standin.delete_cluster(CLUSTER, REGION)
    assert aws.find_cluster_vpc(session, moto, CLUSTER) is None
    live_nat = [n for n in ec2.describe_nat_gateways()["NatGateways"] if n["State"] != "deleted"]
    assert live_nat == [] and ec2.describe_internet_gateways()["InternetGateways"] == []
    assert [i for i in aws.inventory(session, moto, DEPLOYMENT, REGION) if i.ours] == []


def test_final_snapshot_is_named_after_the_instance_and_tagged(session, moto):
    ec2 = aws.client(session, "ec2", moto)
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.1.{i}.0/24",
                                 AvailabilityZone=f"us-west-2{zone}")["Subnet"]["SubnetId"]
               for i, zone in enumerate("ab")]
    aws.ensure_db_subnet_group(session, moto, name=SUBNET_GROUP, subnet_ids=subnets,
                               deployment=DEPLOYMENT)
    group = aws.ensure_rds_security_group(session, moto, name=RDS_SG, vpc_id=vpc,
                                          deployment=DEPLOYMENT)
    aws.ensure_db_instance(
        session, moto, identifier=DB, instance_class="db.t4g.micro", engine_version="16.4",
        allocated_storage=20, master_username="postgres", master_password="Walkthrough-pw-1",
        subnet_group=SUBNET_GROUP, security_group=group.id, deployment=DEPLOYMENT)

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    outcomes = aws.delete_db_instance(session, moto, identifier=DB, deployment=DEPLOYMENT,
                                      now=when, **FAST)
    assert [(o.kind, o.name, o.action) for o in outcomes] == [
        ("RDS instance", DB, "deleted"),
        ("RDS snapshot", f"{DB}-final-20260102-030405", "created"),
    ]
    aws.wait_db_deleted(session, moto, identifier=DB, **FAST)
    rds = aws.client(session, "rds", moto)
    (snapshot,) = rds.describe_db_snapshots(DBSnapshotIdentifier=outcomes[1].name)["DBSnapshots"]
    assert labels.is_ours_aws(snapshot["TagList"], DEPLOYMENT)
    # With the instance gone, the group and subnet group go too.
    assert aws.delete_rds_security_group(session, moto, name=RDS_SG, deployment=DEPLOYMENT,
                                         **FAST)[0].action == "deleted"
    assert aws.delete_db_subnet_group(session, moto, name=SUBNET_GROUP, deployment=DEPLOYMENT,
                                      **FAST).action == "deleted"
