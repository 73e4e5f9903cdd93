"""The sandbox eksctl stand-in against a real moto server: what it creates is what the
walkthrough's discovery queries find, it is idempotent, and it deletes all of it."""

from __future__ import annotations

import stat
import threading

import pytest
import yaml
from kubernetes import client as kube_client
from kubernetes import config as kube_config

from runbook_lib import aws, labels
from runbook_lib.errors import TargetError
from runbook_lib.sandbox.eksctl_standin import SandboxEksctl

from .common import CLUSTER, DEPLOYMENT


def test_discovery_queries_find_what_the_standin_created(
    session, moto, standin, cluster_config_file, tmp_path
):
    cluster = tmp_path / "kubeconfig"
    slow = SandboxEksctl(session, moto, "http://127.0.0.1:6443", control_plane_delay_s=2.5,
                         wait_interval_s=0.05)
    failures: list[BaseException] = []

    def create() -> None:
        try:
            slow.create_cluster(cluster_config_file, cluster)
        except BaseException as exc:  # handed to the test's thread below
            failures.append(exc)

    worker = threading.Thread(target=create)
    worker.start()
    try:
        # The RDS work can start on the VPC while the control plane is still being created.
        network = aws.wait_for_vpc(session, moto, CLUSTER, timeout_s=60, interval_s=0.05)
        assert not aws.cluster_exists(session, moto, CLUSTER)
        assert aws.find_cluster_security_group(session, moto, CLUSTER, network.vpc_id) is None
        group_id = aws.wait_for_cluster_security_group(
            session, moto, CLUSTER, network.vpc_id, timeout_s=60, interval_s=0.05)
    finally:
        worker.join(timeout=120)
    assert not worker.is_alive() and not failures, failures
    assert [o.action for o in slow.outcomes if o.kind != "kubeconfig"] == ["created"] * 7
    ec2 = aws.client(session, "ec2", moto)

    # VPC by the eksctl tag, as `aws ec2 describe-vpcs --filters tag:alpha.eksctl.io/…`.
    vpc_id = aws.find_cluster_vpc(session, moto, CLUSTER)
    assert vpc_id
    vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    tags = aws.tag_dict(vpc["Tags"])
    assert tags["aws:cloudformation:stack-name"] == f"eksctl-{CLUSTER}-cluster"
    assert tags["eksctl.cluster.k8s.io/v1alpha1/cluster-name"] == CLUSTER
    assert labels.is_ours_aws(tags, DEPLOYMENT)

    # Private subnets by logical id, one per zone, tagged for internal load balancers.
    private = aws.find_private_subnets(session, moto, vpc_id)
    subnets = ec2.describe_subnets(SubnetIds=private)["Subnets"]
    assert sorted(s["AvailabilityZone"] for s in subnets) == [
        "us-west-2a", "us-west-2b", "us-west-2c"]
    for subnet in subnets:
        subnet_tags = aws.tag_dict(subnet["Tags"])
        zone = subnet["AvailabilityZone"].upper().replace("-", "")
        assert subnet_tags["aws:cloudformation:logical-id"] == f"SubnetPrivate{zone}"
        assert subnet_tags["kubernetes.io/role/internal-elb"] == "1"
        assert labels.is_ours_aws(subnet_tags, DEPLOYMENT)
    public = ec2.describe_subnets(Filters=[
        {"Name": "vpc-id", "Values": [vpc_id]},
        {"Name": "tag:aws:cloudformation:logical-id", "Values": ["SubnetPublic*"]},
    ])["Subnets"]
    assert len(public) == 3
    assert all(aws.tag_dict(s["Tags"])["kubernetes.io/role/elb"] == "1" for s in public)
    # eksctl's /19 layout of 192.168.0.0/16: public first, then private.
    assert sorted(s["CidrBlock"] for s in subnets) == [
        "192.168.128.0/19", "192.168.160.0/19", "192.168.96.0/19"]

    # The cluster security group EKS creates, by the walkthrough's tag filter.
    assert group_id == aws.find_cluster_security_group(session, moto, CLUSTER, vpc_id)
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert group["GroupName"].startswith(f"eks-cluster-sg-{CLUSTER}-")
    group_tags = aws.tag_dict(group["Tags"])
    assert group_tags[f"kubernetes.io/cluster/{CLUSTER}"] == "owned"
    assert labels.is_ours_aws(group_tags, DEPLOYMENT)

    # The cluster, its node group and their roles, with managed policies attached.
    described = aws.describe_cluster(session, moto, CLUSTER)
    assert described["version"] == "1.31" and labels.is_ours_aws(described["tags"], DEPLOYMENT)
    eks = aws.client(session, "eks", moto)
    nodegroup = eks.describe_nodegroup(clusterName=CLUSTER, nodegroupName="default")["nodegroup"]
    assert nodegroup["scalingConfig"] == {"minSize": 2, "maxSize": 2, "desiredSize": 2}
    assert set(nodegroup["subnets"]) == set(private)
    assert nodegroup["instanceTypes"] == ["t3.medium"]
    iam = aws.client(session, "iam", moto)
    role_name = nodegroup["nodeRole"].rsplit("/", 1)[1]
    policies = {p["PolicyName"] for p in iam.list_attached_role_policies(
        RoleName=role_name)["AttachedPolicies"]}
    assert {"AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy",
            "AmazonEC2ContainerRegistryReadOnly"} <= policies

    # The kubeconfig: private to its owner, pointing at the sandbox API with a plain token.
    assert stat.S_IMODE(cluster.stat().st_mode) == 0o600
    doc = yaml.safe_load(cluster.read_text())
    assert doc["current-context"] == CLUSTER
    configuration = kube_client.Configuration()
    kube_config.load_kube_config(config_file=str(cluster), client_configuration=configuration)
    assert configuration.host == "http://127.0.0.1:6443"
    assert "Bearer sandbox" in configuration.api_key.values()

    # write-kubeconfig works for an existing cluster only.
    standin.write_kubeconfig(CLUSTER, "us-west-2", tmp_path / "other" / "kubeconfig")
    assert yaml.safe_load((tmp_path / "other" / "kubeconfig").read_text()) == doc
    with pytest.raises(TargetError, match="no EKS cluster"):
        standin.write_kubeconfig("no-such-cluster", "us-west-2", tmp_path / "k")

    # A second run finds everything and merges the kubeconfig instead of duplicating it.
    standin.create_cluster(cluster_config_file, cluster)
    actions = {o.action for o in standin.outcomes if o.kind != "kubeconfig"}
    assert actions == {"found"}, standin.outcomes
    doc = yaml.safe_load(cluster.read_text())
    assert len(doc["contexts"]) == 1 and len(doc["clusters"]) == 1
