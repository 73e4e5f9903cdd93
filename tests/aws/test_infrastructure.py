"""The walkthrough's infrastructure and cleanup, end to end on a real moto server.

Covers a full run and its cleanup down to an empty inventory, a second run that creates
nothing, a deployment stopped half way and cleaned up completely, and look-alike resources
(right name, no tags) that are refused and survive cleanup.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runbook_lib import aws, labels
from runbook_lib.errors import Refusal

from .common import CLUSTER, DEPLOYMENT, REGION

DB = "dbos-app-pg"
SUBNET_GROUP = "dbos-app-db"
RDS_SG = "dbos-app-rds"
REPOS = ("dbos-app", "dbos-migrate")
FAST = {"timeout_s": 20, "interval_s": 0.05}


def provision(session, url, *, stop_after: str = "") -> list:
    """The Infrastructure section as stage code runs it; ``stop_after`` ends it early."""
    network = aws.wait_for_vpc(session, url, CLUSTER, **FAST)
    outcomes = [aws.ensure_db_subnet_group(
        session, url, name=SUBNET_GROUP, subnet_ids=network.private_subnet_ids,
        deployment=DEPLOYMENT)]
    group = aws.ensure_rds_security_group(
        session, url, name=RDS_SG, vpc_id=network.vpc_id, deployment=DEPLOYMENT)
    outcomes.append(group)
    if stop_after == "security group":
        return outcomes
    outcomes.append(aws.ensure_db_instance(
        session, url, identifier=DB, instance_class="db.t4g.micro", engine_version="16",
        allocated_storage=20, master_username="postgres", master_password="Walkthrough-pw-1",
        subnet_group=SUBNET_GROUP, security_group=group.id, deployment=DEPLOYMENT))
    cluster_group = aws.wait_for_cluster_security_group(session, url, CLUSTER, network.vpc_id,
                                                        **FAST)
    outcomes.append(aws.ensure_rds_security_group(
        session, url, name=RDS_SG, vpc_id=network.vpc_id, deployment=DEPLOYMENT,
        source_group_id=cluster_group))
    address, port = aws.wait_db_available(session, url, identifier=DB, **FAST)
    assert address and port == 5432
    for repo in REPOS:
        outcomes.append(aws.ensure_repository(session, url, name=repo, deployment=DEPLOYMENT))
    return outcomes


def teardown(session, url, standin, *, skip_final_snapshot: bool = True) -> list:
    outcomes = aws.cleanup(
        session, url, deployment=DEPLOYMENT, db_instance=DB, rds_security_group=RDS_SG,
        db_subnet_group=SUBNET_GROUP, repositories=REPOS,
        skip_final_snapshot=skip_final_snapshot, **FAST)
    standin.delete_cluster(CLUSTER, REGION)
    return outcomes


def test_full_run_is_idempotent_and_cleanup_leaves_nothing(session, moto, standin, cluster):
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
    assert {"EKS cluster", "VPC", "RDS instance", "DB subnet group", "ECR repository",
            "IAM role", "security group", "subnet"} <= kinds
    assert all(item.ours for item in inventory)

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


def test_a_half_created_deployment_is_cleaned_up_completely(session, moto, standin, cluster):
    provision(session, moto, stop_after="security group")
    outcomes = teardown(session, moto, standin)
    assert [(o.kind, o.action) for o in outcomes] == [
        ("RDS instance", "absent"),
        ("security group", "deleted"),
        ("DB subnet group", "deleted"),
        ("ECR repository", "absent"),
        ("ECR repository", "absent"),
    ]
    assert aws.inventory(session, moto, DEPLOYMENT, REGION) == []


def test_look_alikes_are_refused_and_survive_cleanup(session, moto, standin, cluster):
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
    # And the cluster cannot go while they occupy its VPC, as on AWS.
    with pytest.raises(Exception, match="still holds"):
        standin.delete_cluster(CLUSTER, REGION)


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
