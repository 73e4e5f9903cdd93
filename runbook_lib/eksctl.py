"""The eksctl ClusterConfig the cluster stage writes, and the reading of it back.

The walkthrough creates its cluster with ``eksctl create cluster --name … --version 1.31
--nodegroup-name default --node-type t3.medium --nodes 2 --managed``. The runbook writes the same
cluster as a ClusterConfig file instead, because a file can carry what flags cannot (our tags on
every resource eksctl creates, private node networking) and is kept with the run's record. On the
eks target the real eksctl reads the file (:class:`runbook_lib.cli_tools.Eksctl`); on the sandbox
the stand-in reads the very same file (:mod:`runbook_lib.sandbox.eksctl_standin`).

Only well-known ClusterConfig fields are used: ``metadata`` (name, region, version, tags),
``availabilityZones``, ``vpc.cidr``, ``vpc.nat.gateway``, ``vpc.clusterEndpoints`` and
``managedNodeGroups`` (name, instanceType, desiredCapacity, minSize, maxSize, volumeSize,
privateNetworking, labels, tags). Inputs are checked here, because a bad value otherwise fails
only after eksctl has started creating CloudFormation stacks.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from runbook_lib import labels
from runbook_lib.errors import ParameterError

API_VERSION = "eksctl.io/v1alpha5"
KIND = "ClusterConfig"

# eksctl's own rule for cluster names (EKS allows more, eksctl does not).
_CLUSTER_NAME = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]*$")
_NODEGROUP_NAME = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9_]*$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_K8S_VERSION = re.compile(r"^1\.(\d{2})$")
_EC2_TYPE = re.compile(r"^[a-z][a-z0-9-]*\d[a-z0-9-]*\.[a-z0-9]+$")
_TAG_KEY = re.compile(r"^[\w .:/=+\-@]{1,128}$")
_TAG_VALUE = re.compile(r"^[\w .:/=+\-@]{0,256}$")

# The oldest Kubernetes minor that EKS still offers (in extended support); newer ones pass, so
# a new EKS release does not need a code change here.
_OLDEST_MINOR = 28


@dataclass(frozen=True)
class NodeGroupSpec:
    """One managed node group, as read back from a ClusterConfig."""

    name: str
    instance_type: str
    desired: int
    min_size: int
    max_size: int
    volume_size: int
    private_networking: bool
    labels: dict[str, str]
    tags: dict[str, str]


@dataclass(frozen=True)
class ClusterSpec:
    """The parts of a ClusterConfig the runbook (and the sandbox stand-in) act on."""

    name: str
    region: str
    version: str
    tags: dict[str, str]
    vpc_cidr: str
    nat_gateway: str
    availability_zones: tuple[str, ...]
    nodegroups: tuple[NodeGroupSpec, ...]


def cluster_config(
    *,
    cluster: str,
    region: str,
    version: str,
    nodegroup: str,
    instance_type: str,
    nodes: int,
    min_nodes: int,
    max_nodes: int,
    deployment: str,
    vpc_cidr: str = "192.168.0.0/16",
    private_networking: bool = True,
    volume_size_gib: int = 80,
    availability_zones: list[str] | None = None,
) -> dict:
    """An eksctl ClusterConfig for the walkthrough's cluster, carrying our tags.

    ``metadata.tags`` is what eksctl puts on its CloudFormation stacks, which AWS propagates to
    the VPC, subnets, security groups and the cluster; the node group carries the same tags.
    Raises :class:`ParameterError` listing every bad input.
    """
    problems = _check_inputs(
        cluster=cluster,
        region=region,
        version=version,
        nodegroup=nodegroup,
        instance_type=instance_type,
        nodes=nodes,
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        vpc_cidr=vpc_cidr,
        volume_size_gib=volume_size_gib,
        availability_zones=availability_zones,
    )
    tags = labels.aws_tags(deployment)
    problems += _check_tags(tags)
    if problems:
        raise ParameterError(problems, source="cluster configuration")

    config: dict = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": cluster,
            "region": region,
            "version": str(version),
            "tags": dict(tags),
        },
    }
    if availability_zones:
        config["availabilityZones"] = list(availability_zones)
    config["vpc"] = {
        "cidr": vpc_cidr,
        # One NAT gateway is eksctl's default; private nodes reach ECR and the internet by it.
        "nat": {"gateway": "Single"},
        "clusterEndpoints": {"publicAccess": True, "privateAccess": False},
    }
    config["managedNodeGroups"] = [
        {
            "name": nodegroup,
            "instanceType": instance_type,
            "desiredCapacity": nodes,
            "minSize": min_nodes,
            "maxSize": max_nodes,
            "volumeSize": volume_size_gib,
            "privateNetworking": private_networking,
            "labels": {labels.LABEL_DEPLOYMENT: deployment},
            "tags": dict(tags),
        }
    ]
    return config


def render(config: dict) -> str:
    """The ClusterConfig as YAML, in the field order eksctl's documentation uses."""
    header = "# eksctl ClusterConfig written by the runbook; eksctl create cluster -f <this file>\n"
    return header + yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def write(config: dict, path: Path) -> Path:
    """Write the rendered ClusterConfig to ``path`` (creating its folder) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(config))
    return path


def load(path: Path) -> ClusterSpec:
    """Read a ClusterConfig file back into a :class:`ClusterSpec`, with eksctl's defaults.

    Raises :class:`ParameterError` when the file is not a ClusterConfig the runbook can act on.
    """
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        problem = f"cannot read {Path(path).name}: {exc}"
        raise ParameterError([problem], source="ClusterConfig") from None
    return parse(doc)


def parse(doc: object) -> ClusterSpec:
    """A :class:`ClusterSpec` from an already loaded ClusterConfig document."""
    if not isinstance(doc, dict):
        raise ParameterError(["the file does not hold a mapping"], source="ClusterConfig")
    problems = []
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        problems.append(f"expected apiVersion {API_VERSION} and kind {KIND}")
    meta = doc.get("metadata") or {}
    name, region = str(meta.get("name", "")), str(meta.get("region", ""))
    if not _CLUSTER_NAME.match(name):
        problems.append(f"metadata.name {name!r} is not a valid eksctl cluster name")
    if not _REGION.match(region):
        problems.append(f"metadata.region {region!r} is not an AWS region name")
    vpc = doc.get("vpc") or {}
    nodegroups = []
    for raw in doc.get("managedNodeGroups") or []:
        desired = int(raw.get("desiredCapacity", raw.get("minSize", 2)))
        nodegroups.append(
            NodeGroupSpec(
                name=str(raw.get("name", "")),
                instance_type=str(raw.get("instanceType", "m5.large")),
                desired=desired,
                min_size=int(raw.get("minSize", desired)),
                max_size=int(raw.get("maxSize", desired)),
                volume_size=int(raw.get("volumeSize", 80)),
                private_networking=bool(raw.get("privateNetworking", False)),
                labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
                tags={str(k): str(v) for k, v in (raw.get("tags") or {}).items()},
            )
        )
    if problems:
        raise ParameterError(problems, source="ClusterConfig")
    return ClusterSpec(
        name=name,
        region=region,
        version=str(meta.get("version", "")),
        tags={str(k): str(v) for k, v in (meta.get("tags") or {}).items()},
        vpc_cidr=str(vpc.get("cidr", "192.168.0.0/16")),
        nat_gateway=str((vpc.get("nat") or {}).get("gateway", "Single")),
        availability_zones=tuple(doc.get("availabilityZones") or ()),
        nodegroups=tuple(nodegroups),
    )


def stack_name(cluster: str) -> str:
    """The name eksctl gives the CloudFormation stack of a cluster's VPC and control plane."""
    return f"eksctl-{cluster}-cluster"


def nodegroup_stack_name(cluster: str, nodegroup: str) -> str:
    """The name eksctl gives the CloudFormation stack of a node group."""
    return f"eksctl-{cluster}-nodegroup-{nodegroup}"


def _check_inputs(
    *,
    cluster: str,
    region: str,
    version: str,
    nodegroup: str,
    instance_type: str,
    nodes: int,
    min_nodes: int,
    max_nodes: int,
    vpc_cidr: str,
    volume_size_gib: int,
    availability_zones: list[str] | None,
) -> list[str]:
    problems = []
    if not _CLUSTER_NAME.match(cluster or "") or len(cluster) > 100:
        problems.append(
            f"cluster name {cluster!r}: eksctl wants a letter, then letters, digits or '-' "
            "(at most 100)"
        )
    if not _REGION.match(region or ""):
        problems.append(f"region {region!r} is not an AWS region name like us-west-2")
    match = _K8S_VERSION.match(str(version))
    if not match or int(match.group(1)) < _OLDEST_MINOR:
        problems.append(f"Kubernetes version {version!r}: EKS offers 1.{_OLDEST_MINOR} and newer")
    if not _NODEGROUP_NAME.match(nodegroup or "") or len(nodegroup) > 63:
        problems.append(f"node group name {nodegroup!r} is not valid")
    if not _EC2_TYPE.match(instance_type or ""):
        problems.append(f"instance type {instance_type!r} is not an EC2 type like t3.medium")
    counts = (nodes, min_nodes, max_nodes)
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in counts):
        problems.append("node counts must be whole numbers")
    elif not (0 <= min_nodes <= nodes <= max_nodes and max_nodes >= 1):
        problems.append(
            f"node counts must satisfy 0 <= min ({min_nodes}) <= nodes ({nodes}) <= "
            f"max ({max_nodes}), with max >= 1"
        )
    try:
        net = ipaddress.ip_network(vpc_cidr, strict=True)
        if net.version != 4 or not 16 <= net.prefixlen <= 24:
            problems.append(f"VPC CIDR {vpc_cidr!r} must be an IPv4 block from /16 to /24")
    except ValueError:
        problems.append(f"VPC CIDR {vpc_cidr!r} is not a network address")
    if not isinstance(volume_size_gib, int) or not 20 <= volume_size_gib <= 16384:
        problems.append(f"node volume size {volume_size_gib!r} GiB is outside 20..16384")
    for zone in availability_zones or ():
        if not str(zone).startswith(region or "\0"):
            problems.append(f"availability zone {zone!r} is not in region {region!r}")
    if availability_zones is not None and len(set(availability_zones)) < 2:
        problems.append("EKS needs at least two availability zones")
    return problems


def _check_tags(tags: dict[str, str]) -> list[str]:
    problems = []
    for key, value in tags.items():
        if key.lower().startswith("aws:"):
            problems.append(f"tag key {key!r}: the aws: prefix is reserved")
        elif not _TAG_KEY.match(key):
            problems.append(f"tag key {key!r} is not a valid AWS tag key")
        if not _TAG_VALUE.match(value):
            problems.append(f"tag value for {key!r} is not a valid AWS tag value")
    return problems
