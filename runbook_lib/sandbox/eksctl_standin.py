"""The sandbox's stand-in for eksctl: the same ClusterConfig file, acted out on moto.

:class:`SandboxEksctl` implements :class:`runbook_lib.tools.ClusterTool` for the sandbox target.
It reads the ClusterConfig that the cluster stage wrote for the real eksctl and creates in the
moto server what eksctl and EKS create in an AWS account, with the names and tags the
walkthrough's discovery queries rely on:

- the CloudFormation stack ``eksctl-<cluster>-cluster`` holding the VPC, the internet and NAT
  gateways, public and private subnets in the region's availability zones (logical ids
  ``SubnetPublicUSWEST2A``-style, ``kubernetes.io/role/elb`` / ``internal-elb`` tags) and
  eksctl's control-plane and shared-node security groups. CloudFormation itself stamps the
  ``aws:cloudformation:*`` tags and copies the stack's tags (eksctl's cluster-name tags and the
  config's ``metadata.tags``) onto each resource, as AWS does;
- IAM roles for the control plane and each node group, with their AWS managed policies;
- the EKS cluster and the cluster security group EKS would create (moto creates none),
  ``eks-cluster-sg-<cluster>-<n>``, tagged ``aws:eks:cluster-name`` and
  ``kubernetes.io/cluster/<cluster>=owned``;
- each managed node group, with a node group stack ``eksctl-<cluster>-nodegroup-<name>``.

It then writes a kubeconfig that points at the sandbox Kubernetes API. Everything is idempotent,
and :meth:`SandboxEksctl.delete_cluster` removes all of it. Like real AWS (and unlike moto, whose
half-done stack deletion leaves debris), deleting refuses while something else still lives in
the cluster's VPC, such as the RDS security group or DB subnet group: delete those first.

Only this module and the rest of ``runbook_lib.sandbox`` know that the cluster is not real.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import time
import zlib
from pathlib import Path

import boto3
import yaml
from botocore.exceptions import ClientError

from runbook_lib import aws, eksctl, labels
from runbook_lib.errors import Refusal, TargetError
from runbook_lib.outcome import Outcome
from runbook_lib.progress import Status, wait_for

log = logging.getLogger("runbook_lib.sandbox.eksctl_standin")

STANDIN_VERSION = "0.0.0-sandbox"

TAG_CLUSTER = aws.TAG_EKSCTL_CLUSTER
TAG_CLUSTER_K8S = "eksctl.cluster.k8s.io/v1alpha1/cluster-name"
TAG_NODEGROUP = "alpha.eksctl.io/nodegroup-name"

CLUSTER_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
    "arn:aws:iam::aws:policy/AmazonEKSVPCResourceController",
)
NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
)
CLUSTER_SG_DESCRIPTION = (
    "EKS created security group applied to ENI that is attached to EKS Control Plane master "
    "nodes, as well as any managed workloads."
)


class SandboxEksctl:
    """eksctl's create, write-kubeconfig and delete, acted out on the sandbox's moto server.

    ``control_plane_delay_s`` holds the control plane (and so the cluster security group) back
    after the VPC exists, as EKS does for about ten minutes, so that work started on the VPC
    alone (the RDS steps) really overlaps cluster creation. ``outcomes`` keeps what the last
    call did, one :class:`Outcome` per resource.
    """

    name = "eksctl (sandbox stand-in)"

    def __init__(
        self,
        aws_session: boto3.Session,
        endpoint_url: str,
        kube_url: str,
        *,
        control_plane_delay_s: float = 0.0,
        wait_timeout_s: float = 300,
        wait_interval_s: float = 0.5,
    ):
        if not endpoint_url:
            raise TargetError("the sandbox eksctl needs the moto endpoint; it never calls AWS")
        self.session = aws_session
        self.endpoint_url = endpoint_url
        self.kube_url = kube_url
        self.control_plane_delay_s = control_plane_delay_s
        self.wait_timeout_s = wait_timeout_s
        self.wait_interval_s = wait_interval_s
        self.outcomes: list[Outcome] = []

    def version(self) -> str:
        return STANDIN_VERSION

    # --- creating ---------------------------------------------------------------------------

    def create_cluster(self, config_file: Path, kubeconfig: Path) -> None:
        """Create (or find) everything the ClusterConfig describes; write the kubeconfig."""
        spec = eksctl.load(Path(config_file))
        with _api_errors(f"create cluster {spec.name}"):
            self._create(spec, Path(kubeconfig))

    def _create(self, spec: eksctl.ClusterSpec, kubeconfig: Path) -> None:
        self.outcomes = []
        stack_tags = _stack_tags(spec)
        log.info("creating cluster %s in %s (sandbox)", spec.name, spec.region)

        # eksctl's first stack: the network and its security groups.
        network = self._ensure_cluster_stack(spec, stack_tags)
        service_role = self._ensure_role(
            _role_name(spec.name, "cluster-ServiceRole"),
            "eks.amazonaws.com",
            CLUSTER_POLICIES,
            stack_tags,
            spec,
        )

        # The control plane comes minutes after the VPC on AWS.
        if self.control_plane_delay_s and not self._describe_cluster(spec):
            log.info("control plane of %s: %.0f s to go", spec.name, self.control_plane_delay_s)
            time.sleep(self.control_plane_delay_s)
        self._ensure_control_plane(spec, network, service_role, stack_tags)
        self._ensure_cluster_security_group(spec, network["VPC"], stack_tags)

        for group in spec.nodegroups:
            self._ensure_nodegroup(spec, group, network, stack_tags)

        self._write_kubeconfig(spec.name, spec.region, kubeconfig)

    def _ensure_cluster_stack(self, spec: eksctl.ClusterSpec, tags: dict) -> dict[str, str]:
        cfn = self._client("cloudformation", spec.region)
        name = eksctl.stack_name(spec.name)
        stack = _stack(cfn, name)
        if stack is None:
            zones = self._zones(spec)
            template = _cluster_template(name, spec, zones)
            try:
                cfn.create_stack(
                    StackName=name,
                    TemplateBody=json.dumps(template),
                    Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
                    Capabilities=["CAPABILITY_IAM"],
                )
            except ClientError as exc:
                raise TargetError(f"could not create stack {name}: {exc}") from None
            self._wait_stack(cfn, name, "CREATE_COMPLETE")
            action = "created"
            log.info("created stack %s (VPC and subnets in %s)", name, ", ".join(zones))
        else:
            if not _ours(stack.get("Tags"), spec.tags):
                raise Refusal(f"CloudFormation stack {name} exists but does not carry this "
                              "deployment's tags; the sandbox eksctl will not adopt it")
            if stack["StackStatus"] != "CREATE_COMPLETE":
                raise TargetError(f"stack {name} is {stack['StackStatus']}; delete the cluster "
                                  "and create it again")
            action = "found"
            log.info("found stack %s", name)
        resources = _stack_resources(cfn, name)
        self.outcomes.append(Outcome("CloudFormation stack", name, action, id=resources["VPC"],
                                     detail="VPC, subnets, gateways, security groups"))
        return resources

    def _zones(self, spec: eksctl.ClusterSpec) -> list[str]:
        if spec.availability_zones:
            return list(spec.availability_zones)
        ec2 = self._client("ec2", spec.region)
        zones = sorted(z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]
                       if z.get("State", "available") == "available")
        # eksctl uses three zones, two in us-east-1.
        return zones[: 2 if spec.region == "us-east-1" else 3]

    def _ensure_role(self, name, service, policies, tags, spec) -> str:
        iam = self._client("iam", spec.region)
        try:
            role = iam.get_role(RoleName=name)["Role"]
            role_tags = iam.list_role_tags(RoleName=name)["Tags"]
            if not _ours(role_tags, spec.tags):
                raise Refusal(f"IAM role {name} exists but does not carry this deployment's tags")
            action = "found"
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":
                raise TargetError(f"could not look up IAM role {name}: {exc}") from None
            trust = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": [service]},
                               "Action": ["sts:AssumeRole"]}],
            }
            role = iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(trust),
                Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            )["Role"]
            action = "created"
        for policy in policies:
            # Attaching is idempotent; a missing managed policy means moto was started without
            # MOTO_IAM_LOAD_MANAGED_POLICIES=true.
            try:
                iam.attach_role_policy(RoleName=name, PolicyArn=policy)
            except ClientError as exc:
                raise TargetError(f"could not attach {policy} to {name}: {exc}") from None
        log.info("%s IAM role %s", action, name)
        self.outcomes.append(Outcome("IAM role", name, action, id=role["Arn"]))
        return role["Arn"]

    def _ensure_control_plane(self, spec, network, role_arn, tags) -> None:
        eks = self._client("eks", spec.region)
        cluster = self._describe_cluster(spec)
        if cluster is None:
            subnets = _subnets(network, "Public") + _subnets(network, "Private")
            eks.create_cluster(
                name=spec.name,
                version=spec.version,
                roleArn=role_arn,
                resourcesVpcConfig={
                    "subnetIds": subnets,
                    "securityGroupIds": [network["ControlPlaneSecurityGroup"]],
                    "endpointPublicAccess": True,
                    "endpointPrivateAccess": False,
                },
                tags=tags,
            )
            action = "created"
        else:
            if not _ours(cluster.get("tags"), spec.tags):
                raise Refusal(f"EKS cluster {spec.name} exists but does not carry this "
                              "deployment's tags")
            action = "found"

        def check() -> Status:
            state = (self._describe_cluster(spec) or {}).get("status", "absent")
            return Status(state == "ACTIVE", state, failed=state in {"FAILED", "DELETING"})

        status = wait_for(f"EKS cluster {spec.name}", check, self.wait_timeout_s,
                          self.wait_interval_s)
        if status.failed:
            raise TargetError(f"EKS cluster {spec.name} is {status.state}")
        log.info("%s EKS cluster %s (Kubernetes %s)", action, spec.name, spec.version)
        self.outcomes.append(Outcome("EKS cluster", spec.name, action, detail=status.state))

    def _ensure_cluster_security_group(self, spec, vpc_id: str, tags: dict) -> str:
        ec2 = self._client("ec2", spec.region)
        existing = _cluster_security_groups(ec2, spec.name, vpc_id)
        if existing:
            group_id = existing[0]["GroupId"]
            self.outcomes.append(Outcome("security group", existing[0]["GroupName"], "found",
                                         id=group_id))
            return group_id
        arn = (self._describe_cluster(spec) or {}).get("arn", spec.name)
        name = f"eks-cluster-sg-{spec.name}-{zlib.crc32(arn.encode())}"
        group_tags = {
            **tags,
            aws.TAG_EKS_CLUSTER: spec.name,
            f"kubernetes.io/cluster/{spec.name}": "owned",
            "Name": name,
        }
        group_id = ec2.create_security_group(
            GroupName=name,
            Description=CLUSTER_SG_DESCRIPTION,
            VpcId=vpc_id,
            TagSpecifications=[{
                "ResourceType": "security-group",
                "Tags": [{"Key": k, "Value": v} for k, v in group_tags.items()],
            }],
        )["GroupId"]
        # EKS lets the control plane and the nodes reach each other freely through this group.
        ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id}]}],
        )
        log.info("created cluster security group %s (%s)", name, group_id)
        self.outcomes.append(Outcome("security group", name, "created", id=group_id))
        return group_id

    def _ensure_nodegroup(self, spec, group: eksctl.NodeGroupSpec, network, tags) -> None:
        eks = self._client("eks", spec.region)
        cfn = self._client("cloudformation", spec.region)
        group_tags = {**tags, **group.tags, TAG_NODEGROUP: group.name,
                      "alpha.eksctl.io/nodegroup-type": "managed"}

        # eksctl's node group stack holds the launch template (and, on AWS, the node role).
        stack_name = eksctl.nodegroup_stack_name(spec.name, group.name)
        if _stack(cfn, stack_name) is None:
            cfn.create_stack(
                StackName=stack_name,
                TemplateBody=json.dumps(_nodegroup_template(stack_name, group)),
                Tags=[{"Key": k, "Value": v} for k, v in group_tags.items()],
            )
            self._wait_stack(cfn, stack_name, "CREATE_COMPLETE")
            self.outcomes.append(Outcome("CloudFormation stack", stack_name, "created"))
        role_arn = self._ensure_role(
            _role_name(spec.name, f"nodegroup-{group.name}-NodeInstanceRole"),
            "ec2.amazonaws.com",
            NODE_POLICIES,
            group_tags,
            spec,
        )

        try:
            found = eks.describe_nodegroup(clusterName=spec.name, nodegroupName=group.name)
            if not _ours(found["nodegroup"].get("tags"), spec.tags):
                raise Refusal(f"node group {group.name} exists but does not carry this "
                              "deployment's tags")
            action = "found"
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise TargetError(f"could not look up node group {group.name}: {exc}") from None
            subnets = _subnets(network, "Private" if group.private_networking else "Public")
            node_labels = {**group.labels, TAG_CLUSTER: spec.name, TAG_NODEGROUP: group.name}
            eks.create_nodegroup(
                clusterName=spec.name,
                nodegroupName=group.name,
                scalingConfig={"minSize": group.min_size, "maxSize": group.max_size,
                               "desiredSize": group.desired},
                subnets=subnets,
                instanceTypes=[group.instance_type],
                amiType="AL2023_x86_64_STANDARD",
                capacityType="ON_DEMAND",
                nodeRole=role_arn,
                labels=node_labels,
                tags=group_tags,
            )
            action = "created"

        def check() -> Status:
            try:
                state = eks.describe_nodegroup(clusterName=spec.name, nodegroupName=group.name)[
                    "nodegroup"]["status"]
            except ClientError:
                state = "absent"
            return Status(state == "ACTIVE", state,
                          failed=state in {"CREATE_FAILED", "DEGRADED", "DELETING"})

        status = wait_for(f"node group {group.name}", check, self.wait_timeout_s,
                          self.wait_interval_s)
        if status.failed:
            raise TargetError(f"node group {group.name} is {status.state}")
        log.info("%s managed node group %s (%d x %s)", action, group.name, group.desired,
                 group.instance_type)
        self.outcomes.append(Outcome("EKS node group", group.name, action,
                                     detail=f"{group.desired} x {group.instance_type}"))

    # --- kubeconfig ---------------------------------------------------------------------------

    def write_kubeconfig(self, cluster: str, region: str, kubeconfig: Path) -> None:
        """Write the kubeconfig of an existing cluster (fails when there is none)."""
        if _cluster_state(self._client("eks", region), cluster) is None:
            raise TargetError(f"no EKS cluster named {cluster} in {region}")
        self._write_kubeconfig(cluster, region, Path(kubeconfig))

    def _write_kubeconfig(self, cluster: str, region: str, path: Path) -> None:
        # Merge into an existing file, as eksctl does: replace our entries, keep the others.
        doc: dict = {}
        if path.exists():
            try:
                doc = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                doc = {}
        cluster_entry = f"{cluster}.{region}.eksctl.io"
        user_entry = f"sandbox@{cluster_entry}"
        doc.setdefault("apiVersion", "v1")
        doc.setdefault("kind", "Config")
        doc.setdefault("preferences", {})
        _upsert(doc, "clusters", cluster_entry, {"cluster": {"server": self.kube_url}})
        _upsert(doc, "users", user_entry, {"user": {"token": "sandbox"}})
        _upsert(doc, "contexts", cluster,
                {"context": {"cluster": cluster_entry, "user": user_entry}})
        doc["current-context"] = cluster
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(doc, handle, sort_keys=False)
        os.chmod(path, 0o600)
        log.info("wrote kubeconfig %s (context %s)", path.name, cluster)
        self.outcomes.append(
            Outcome("kubeconfig", path.name, "updated", detail=f"context {cluster}")
        )

    # --- deleting -----------------------------------------------------------------------------

    def delete_cluster(self, cluster: str, region: str) -> None:
        """Delete node groups, the control plane, its roles, security group and stacks.

        Refuses, before deleting anything, while resources the cluster did not create still
        live in its VPC (CloudFormation could not delete the VPC on AWS either).
        """
        with _api_errors(f"delete cluster {cluster}"):
            self._delete(cluster, region)

    def _delete(self, cluster: str, region: str) -> None:
        self.outcomes = []
        eks = self._client("eks", region)
        ec2 = self._client("ec2", region)
        cfn = self._client("cloudformation", region)
        stack_name = eksctl.stack_name(cluster)
        stack = _stack(cfn, stack_name)
        vpc_id = _stack_resources(cfn, stack_name).get("VPC") if stack else None
        if vpc_id:
            self._refuse_foreign_dependencies(cluster, region, vpc_id, stack_name)

        # Node groups first: EKS will not delete a cluster that still has some.
        if _cluster_state(eks, cluster) is not None:
            for name in eks.list_nodegroups(clusterName=cluster).get("nodegroups", []):
                eks.delete_nodegroup(clusterName=cluster, nodegroupName=name)
                self._wait_gone(f"node group {name}", lambda n=name: _nodegroup_state(
                    eks, cluster, n))
                self.outcomes.append(Outcome("EKS node group", name, "deleted"))
            eks.delete_cluster(name=cluster)
            self._wait_gone(f"EKS cluster {cluster}", lambda: _cluster_state(eks, cluster))
            self.outcomes.append(Outcome("EKS cluster", cluster, "deleted"))
        else:
            self.outcomes.append(Outcome("EKS cluster", cluster, "absent"))

        # EKS deletes the cluster security group it made.
        for group in _cluster_security_groups(ec2, cluster, vpc_id):
            ec2.delete_security_group(GroupId=group["GroupId"])
            self.outcomes.append(Outcome("security group", group["GroupName"], "deleted",
                                         id=group["GroupId"]))

        for stack_item in _cluster_stacks(cfn, cluster):
            if stack_item["StackName"] != stack_name:
                self._delete_stack(cfn, stack_item["StackName"])
        self._delete_roles(cluster, region)
        if stack:
            _delete_gateways_and_routes(ec2, stack_name, vpc_id)
            self._delete_stack(cfn, stack_name)
        log.info("deleted cluster %s and its resources (sandbox)", cluster)

    def _refuse_foreign_dependencies(self, cluster, region, vpc_id, stack_name) -> None:
        ec2 = self._client("ec2", region)
        rds = self._client("rds", region)
        groups = ec2.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]
        foreign = []
        for group in groups:
            tags = aws.tag_dict(group.get("Tags"))
            if group["GroupName"] == "default":
                continue
            if tags.get("aws:cloudformation:stack-name") == stack_name:
                continue
            if tags.get(aws.TAG_EKS_CLUSTER) == cluster:
                continue
            foreign.append(f"security group {group['GroupName']} ({group['GroupId']})")
        for page in rds.get_paginator("describe_db_subnet_groups").paginate():
            for subnet_group in page["DBSubnetGroups"]:
                if subnet_group.get("VpcId") == vpc_id:
                    foreign.append(f"DB subnet group {subnet_group['DBSubnetGroupName']}")
        if foreign:
            raise TargetError(
                f"cannot delete cluster {cluster}: its VPC {vpc_id} still holds "
                f"{', '.join(foreign)} (on AWS the stack {stack_name} would end DELETE_FAILED). "
                "Delete the RDS resources first, then the cluster."
            )

    def _delete_roles(self, cluster: str, region: str) -> None:
        iam = self._client("iam", region)
        # Long role names are cut at 55 characters (see _role_name); the tag decides.
        prefix = f"eksctl-{cluster}-"[:55]
        names = sorted(role["RoleName"] for page in iam.get_paginator("list_roles").paginate()
                       for role in page["Roles"])
        for name in names:
            if name.startswith(prefix):
                tags = aws.tag_dict(iam.list_role_tags(RoleName=name)["Tags"])
                if tags.get(TAG_CLUSTER) != cluster:
                    continue
                attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
                for policy in attached:
                    iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
                iam.delete_role(RoleName=name)
                log.info("deleted IAM role %s", name)
                self.outcomes.append(Outcome("IAM role", name, "deleted"))

    def _delete_stack(self, cfn, name: str) -> None:
        try:
            cfn.delete_stack(StackName=name)
        except ClientError as exc:
            raise TargetError(f"could not delete stack {name}: {exc}") from None
        self._wait_gone(f"stack {name}", lambda: (_stack(cfn, name) or {}).get("StackStatus"))
        log.info("deleted stack %s", name)
        self.outcomes.append(Outcome("CloudFormation stack", name, "deleted"))

    # --- helpers ------------------------------------------------------------------------------

    def _client(self, service: str, region: str):
        return aws.client(self.session, service, self.endpoint_url, region)

    def _describe_cluster(self, spec: eksctl.ClusterSpec) -> dict | None:
        eks = self._client("eks", spec.region)
        try:
            return eks.describe_cluster(name=spec.name)["cluster"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise TargetError(f"could not describe cluster {spec.name}: {exc}") from None

    def _wait_stack(self, cfn, name: str, wanted: str) -> None:
        def check() -> Status:
            state = (_stack(cfn, name) or {}).get("StackStatus", "absent")
            return Status(state == wanted, state,
                          failed=state.endswith("FAILED") or "ROLLBACK" in state)

        status = wait_for(f"stack {name}", check, self.wait_timeout_s, self.wait_interval_s)
        if status.failed:
            raise TargetError(f"stack {name} ended {status.state}")

    def _wait_gone(self, what: str, state_of) -> None:
        def check() -> Status:
            state = state_of()
            return Status(state is None, state or "gone")

        wait_for(f"{what} to be deleted", check, self.wait_timeout_s, self.wait_interval_s)


# --- CloudFormation templates, after eksctl's --------------------------------------------------


def _stack_tags(spec: eksctl.ClusterSpec) -> dict[str, str]:
    return {
        TAG_CLUSTER: spec.name,
        TAG_CLUSTER_K8S: spec.name,
        "alpha.eksctl.io/eksctl-version": STANDIN_VERSION,
        "alpha.eksctl.io/cluster-oidc-enabled": "false",
        **spec.tags,
    }


def _zone_id(zone: str) -> str:
    return zone.upper().replace("-", "")


def _cluster_template(stack: str, spec: eksctl.ClusterSpec, zones: list[str]) -> dict:
    """The network part of eksctl's cluster stack: one public and one private subnet per zone."""
    net = ipaddress.ip_network(spec.vpc_cidr)
    blocks = list(net.subnets(new_prefix=min(net.prefixlen + 3, 28)))
    if len(blocks) < 2 * len(zones):
        raise TargetError(f"VPC CIDR {spec.vpc_cidr} is too small for {len(zones)} zones")

    def name_tag(logical: str, extra: dict | None = None) -> list[dict]:
        tags = {"Name": f"{stack}/{logical}", **(extra or {})}
        return [{"Key": k, "Value": v} for k, v in tags.items()]

    vpc = {"Ref": "VPC"}
    res: dict = {
        "VPC": {"Type": "AWS::EC2::VPC", "Properties": {
            "CidrBlock": spec.vpc_cidr, "EnableDnsHostnames": True, "EnableDnsSupport": True,
            "Tags": name_tag("VPC")}},
        "InternetGateway": {"Type": "AWS::EC2::InternetGateway",
                            "Properties": {"Tags": name_tag("InternetGateway")}},
        "VPCGatewayAttachment": {"Type": "AWS::EC2::VPCGatewayAttachment", "Properties": {
            "InternetGatewayId": {"Ref": "InternetGateway"}, "VpcId": vpc}},
        "PublicRouteTable": {"Type": "AWS::EC2::RouteTable", "Properties": {
            "VpcId": vpc, "Tags": name_tag("PublicRouteTable")}},
        "PublicSubnetRoute": {"Type": "AWS::EC2::Route", "DependsOn": "VPCGatewayAttachment",
                              "Properties": {"RouteTableId": {"Ref": "PublicRouteTable"},
                                             "DestinationCidrBlock": "0.0.0.0/0",
                                             "GatewayId": {"Ref": "InternetGateway"}}},
        "ControlPlaneSecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "Communication between the control plane and worker nodegroups",
            "VpcId": vpc, "Tags": name_tag("ControlPlaneSecurityGroup")}},
        "ClusterSharedNodeSecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "Communication between all nodes in the cluster",
            "VpcId": vpc, "Tags": name_tag("ClusterSharedNodeSecurityGroup")}},
        "IngressInterNodeGroupSG": {"Type": "AWS::EC2::SecurityGroupIngress", "Properties": {
            "GroupId": {"Ref": "ClusterSharedNodeSecurityGroup"},
            "SourceSecurityGroupId": {"Ref": "ClusterSharedNodeSecurityGroup"},
            "IpProtocol": "-1", "FromPort": -1, "ToPort": -1,
            "Description": "Allow nodes to communicate with each other (all ports)"}},
    }
    nat = spec.nat_gateway.lower()
    for i, zone in enumerate(zones):
        zid = _zone_id(zone)
        public, private = f"SubnetPublic{zid}", f"SubnetPrivate{zid}"
        res[public] = {"Type": "AWS::EC2::Subnet", "Properties": {
            "VpcId": vpc, "AvailabilityZone": zone, "CidrBlock": str(blocks[i]),
            "MapPublicIpOnLaunch": True,
            "Tags": name_tag(public, {"kubernetes.io/role/elb": "1"})}}
        res[private] = {"Type": "AWS::EC2::Subnet", "Properties": {
            "VpcId": vpc, "AvailabilityZone": zone, "CidrBlock": str(blocks[len(zones) + i]),
            "Tags": name_tag(private, {"kubernetes.io/role/internal-elb": "1"})}}
        res[f"RouteTableAssociationPublic{zid}"] = {
            "Type": "AWS::EC2::SubnetRouteTableAssociation",
            "Properties": {"RouteTableId": {"Ref": "PublicRouteTable"},
                           "SubnetId": {"Ref": public}}}
        res[f"PrivateRouteTable{zid}"] = {"Type": "AWS::EC2::RouteTable", "Properties": {
            "VpcId": vpc, "Tags": name_tag(f"PrivateRouteTable{zid}")}}
        res[f"RouteTableAssociationPrivate{zid}"] = {
            "Type": "AWS::EC2::SubnetRouteTableAssociation",
            "Properties": {"RouteTableId": {"Ref": f"PrivateRouteTable{zid}"},
                           "SubnetId": {"Ref": private}}}
        # One NAT gateway for all zones (Single), one per zone (HighlyAvailable), or none.
        if nat == "disable":
            continue
        gateway = "NATGateway" if nat == "single" else f"NATGateway{zid}"
        if gateway not in res:
            res[f"NATIP{'' if nat == 'single' else zid}"] = {
                "Type": "AWS::EC2::EIP", "DependsOn": "VPCGatewayAttachment",
                "Properties": {"Domain": "vpc"}}
            res[gateway] = {"Type": "AWS::EC2::NatGateway", "Properties": {
                "AllocationId": {"Fn::GetAtt": [f"NATIP{'' if nat == 'single' else zid}",
                                                "AllocationId"]},
                "SubnetId": {"Ref": public}, "Tags": name_tag(gateway)}}
        res[f"NATPrivateSubnetRoute{zid}"] = {"Type": "AWS::EC2::Route", "Properties": {
            "RouteTableId": {"Ref": f"PrivateRouteTable{zid}"},
            "DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": {"Ref": gateway}}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "EKS cluster (dedicated VPC) [sandbox stand-in for eksctl]",
        "Resources": res,
        "Outputs": {"VPC": {"Value": vpc}},
    }


def _nodegroup_template(stack: str, group: eksctl.NodeGroupSpec) -> dict:
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "EKS Managed Nodes [sandbox stand-in for eksctl]",
        "Resources": {
            "LaunchTemplate": {"Type": "AWS::EC2::LaunchTemplate", "Properties": {
                "LaunchTemplateName": stack,
                "LaunchTemplateData": {
                    "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {
                        "VolumeSize": group.volume_size, "VolumeType": "gp3"}}],
                    "MetadataOptions": {"HttpPutResponseHopLimit": 2, "HttpTokens": "required"},
                }}},
        },
    }


# --- small readers -------------------------------------------------------------------------------


@contextlib.contextmanager
def _api_errors(doing: str):
    """An API failure the stand-in did not expect becomes a TargetError, as eksctl's would."""
    try:
        yield
    except ClientError as exc:
        raise TargetError(f"could not {doing}: {exc}") from None


def _ours(tags, wanted: dict[str, str]) -> bool:
    """True when ``tags`` carry the config's runbook tags (the deployment's mark)."""
    have = aws.tag_dict(tags)
    keys = (labels.TAG_MANAGED_BY, labels.TAG_DEPLOYMENT)
    return all(have.get(k) == wanted.get(k) for k in keys if k in wanted) and any(
        k in wanted for k in keys
    )


def _role_name(cluster: str, suffix: str) -> str:
    name = f"eksctl-{cluster}-{suffix}"
    if len(name) <= 64:
        return name
    return f"{name[:55]}-{zlib.crc32(name.encode()):08x}"


def _stack(cfn, name: str) -> dict | None:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise TargetError(f"could not describe stack {name}: {exc}") from None
    live = [s for s in stacks if s.get("StackStatus") != "DELETE_COMPLETE"]
    return live[0] if live else None


def _stack_resources(cfn, name: str) -> dict[str, str]:
    summaries = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in summaries}


def _cluster_stacks(cfn, cluster: str) -> list[dict]:
    stacks = [s for page in cfn.get_paginator("describe_stacks").paginate()
              for s in page["Stacks"]]
    return [s for s in stacks if aws.tag_dict(s.get("Tags")).get(TAG_CLUSTER) == cluster
            and s.get("StackStatus") != "DELETE_COMPLETE"]


def _subnets(resources: dict[str, str], kind: str) -> list[str]:
    prefix = f"Subnet{kind}"
    return [resources[k] for k in sorted(resources) if k.startswith(prefix)]


def _cluster_security_groups(ec2, cluster: str, vpc_id: str | None) -> list[dict]:
    filters = [{"Name": f"tag:{aws.TAG_EKS_CLUSTER}", "Values": [cluster]}]
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    return ec2.describe_security_groups(Filters=filters)["SecurityGroups"]


def _nodegroup_state(eks, cluster: str, name: str) -> str | None:
    try:
        return eks.describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"][
            "status"]
    except ClientError:
        return None


def _cluster_state(eks, cluster: str) -> str | None:
    try:
        return eks.describe_cluster(name=cluster)["cluster"]["status"]
    except ClientError:
        return None


def _delete_gateways_and_routes(ec2, stack_name: str, vpc_id: str | None) -> None:
    """Delete the stack's NAT and internet gateways, addresses and route tables by hand.

    moto's CloudFormation cannot delete these resource types (it skips them), and the VPC
    cannot go while they exist, so the stand-in does what CloudFormation does on AWS first.
    """
    if not vpc_id:
        return
    in_stack = [{"Name": "tag:aws:cloudformation:stack-name", "Values": [stack_name]}]
    in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    allocations, interfaces = [], []
    for gateway in ec2.describe_nat_gateways(Filters=in_vpc)["NatGateways"]:
        if gateway.get("State") in {"deleted", "deleting"}:
            continue
        for address in gateway.get("NatGatewayAddresses", []):
            allocations.append(address.get("AllocationId"))
            interfaces.append(address.get("NetworkInterfaceId"))
        ec2.delete_nat_gateway(NatGatewayId=gateway["NatGatewayId"])
    for interface in filter(None, interfaces):
        with contextlib.suppress(ClientError):
            ec2.delete_network_interface(NetworkInterfaceId=interface)
    for allocation in filter(None, allocations):
        with contextlib.suppress(ClientError):
            ec2.release_address(AllocationId=allocation)
    for table in ec2.describe_route_tables(Filters=in_stack)["RouteTables"]:
        for association in table.get("Associations", []):
            if not association.get("Main"):
                ec2.disassociate_route_table(
                    AssociationId=association["RouteTableAssociationId"])
        ec2.delete_route_table(RouteTableId=table["RouteTableId"])
    for gateway in ec2.describe_internet_gateways(Filters=in_stack)["InternetGateways"]:
        for attachment in gateway.get("Attachments", []):
            ec2.detach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"],
                                        VpcId=attachment["VpcId"])
        ec2.delete_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"])


def _upsert(doc: dict, section: str, name: str, body: dict) -> None:
    entries = [e for e in (doc.get(section) or []) if e.get("name") != name]
    entries.append({"name": name, **body})
    doc[section] = entries
