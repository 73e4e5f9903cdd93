"""The AWS side of the runbook: discovery, RDS, ECR, the inventory and cleanup.

Stage code calls these functions with explicit names, sizes and tags; each takes the
``boto3.Session`` and the endpoint URL of the target it acts on (``None`` for AWS itself, the
moto server's URL on the sandbox), so the same code runs on both. Every creating function is
idempotent: it finds an existing resource by name, checks that it carries our tags
(:func:`runbook_lib.labels.is_ours_aws`), and returns an :class:`~runbook_lib.outcome.Outcome`
saying whether it created, found or updated it. A resource with the right name but without our
tags is never adopted (:class:`~runbook_lib.errors.Refusal`), and cleanup leaves it in place.

The order follows the walkthrough's Infrastructure section: find the VPC and private subnets
eksctl made, then the DB subnet group, the RDS security group (ingress on the PostgreSQL port
from the EKS cluster security group only), the RDS instance, and the ECR repositories. Cleanup
runs in reverse, before the cluster itself is deleted (the VPC cannot go while RDS still uses
it). The RDS work may start as soon as the VPC exists (:func:`wait_for_vpc`) while the EKS
control plane is still being created; only the ingress rule needs the cluster security group.

Secrets: the RDS master password and the ECR registry password pass through here. Neither is
logged, put in an exception or an Outcome; both are registered with
:mod:`runbook_lib.redact`, and botocore's wire logging (which prints request and response
bodies at DEBUG) is held at INFO while a call carries one.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import NamedTuple

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from runbook_lib import labels, redact
from runbook_lib.errors import ParameterError, Refusal, TargetError
from runbook_lib.outcome import Outcome
from runbook_lib.progress import Status, wait_for

log = logging.getLogger("runbook_lib.aws")

# Tags eksctl (and the EKS service) put on what they create; the walkthrough filters on them.
TAG_EKSCTL_CLUSTER = "alpha.eksctl.io/cluster-name"
TAG_CFN_LOGICAL_ID = "aws:cloudformation:logical-id"
TAG_EKS_CLUSTER = "aws:eks:cluster-name"
PRIVATE_SUBNET_PATTERN = "SubnetPrivate*"

_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_RDS_IDENTIFIER = re.compile(r"^[a-zA-Z](?!.*--)[a-zA-Z0-9-]{0,62}$")
_RDS_CLASS = re.compile(
    r"^db\.[a-z][a-z0-9-]*\d[a-z0-9-]*\.(micro|small|medium|large|xlarge|\d+xlarge)$"
)
_PG_VERSION = re.compile(r"^(1[3-8])(\.\d+)?$")
_PG_MASTER_USER = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,62}$")
_RESERVED_USERS = {"rdsadmin", "rdsrepladmin", "rds_superuser", "public"}
_PASSWORD_FORBIDDEN = set("/'\"@ ")
_SUBNET_GROUP = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._ -]{0,254}$")
_SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
_SG_NAME = re.compile(r"^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{1,255}$")
_ECR_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")

# RDS instance states from which waiting for "available" can no longer succeed.
_RDS_FAILED_STATES = {
    "failed",
    "incompatible-network",
    "incompatible-option-group",
    "incompatible-parameters",
    "incompatible-restore",
    "inaccessible-encryption-credentials",
    "restore-error",
    "storage-full",
    "deleting",
}


# --- sessions and clients -------------------------------------------------------------------


def session(region: str, profile: str | None = None) -> boto3.Session:
    """A boto3 session for ``region`` (and a named profile, when given)."""
    if not _REGION.match(region or ""):
        raise ParameterError([f"{region!r} is not an AWS region name like us-west-2"])
    try:
        return boto3.Session(region_name=region, profile_name=profile)
    except BotoCoreError as exc:
        raise ParameterError([f"AWS profile {profile!r}: {exc}"]) from None


_clients_lock = threading.Lock()
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def client(session: boto3.Session, service: str, endpoint_url: str | None, region: str = ""):
    """A (cached) client for ``service``; on ``endpoint_url`` when one is given.

    An endpoint that is given but unusable is an error, never a silent fall back to real AWS.
    Clients are shared per session, service, endpoint and region; creating them is serialized
    because a boto3 session is not safe to use from two threads at once.
    """
    if endpoint_url is not None and not re.match(r"^https?://[^/\s]+", endpoint_url):
        raise ParameterError(
            [f"AWS endpoint {endpoint_url!r} is not an http(s) URL; refusing to fall back to AWS"]
        )
    region = region or session.region_name or ""
    if not region:
        raise ParameterError(["no AWS region: create the session with aws.session(region)"])
    key = (service, endpoint_url, region)
    with _clients_lock:
        per_session = _clients.setdefault(session, {})
        if key not in per_session:
            per_session[key] = session.client(
                service, endpoint_url=endpoint_url, region_name=region, config=_config(endpoint_url)
            )
        return per_session[key]


def _config(endpoint_url: str | None) -> Config:
    # A local endpoint that does not answer should fail fast; AWS itself gets patient retries.
    if endpoint_url:
        return Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2})
    return Config(retries={"max_attempts": 8, "mode": "standard"})


def caller_identity(session: boto3.Session, endpoint_url: str | None) -> dict[str, str]:
    """Who the session acts as: ``{"Account": …, "Arn": …}`` (no keys, no tokens)."""
    sts = client(session, "sts", endpoint_url)
    with _target_errors("get the caller identity"):
        identity = sts.get_caller_identity()
    return {"Account": identity["Account"], "Arn": identity["Arn"]}


_quiet_lock = threading.Lock()
_quiet_state: dict[str, tuple[int, int]] = {}  # logger name -> (users, level to restore)


@contextlib.contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Hold the named loggers at INFO or above for the duration (for calls carrying a secret).

    At DEBUG, botocore logs every request's parameters and every response body (the RDS master
    password, the ECR token) and ``sh`` logs every chunk of a command's input and output.
    Nested and concurrent uses share one save and restore per logger.
    """
    with _quiet_lock:
        for name in names:
            users, saved = _quiet_state.get(name, (0, 0))
            logger = logging.getLogger(name)
            if users == 0:
                saved = logger.level
                if logger.getEffectiveLevel() < logging.INFO:
                    logger.setLevel(logging.INFO)
            _quiet_state[name] = (users + 1, saved)
    try:
        yield
    finally:
        with _quiet_lock:
            for name in names:
                users, saved = _quiet_state[name]
                if users == 1:
                    logging.getLogger(name).setLevel(saved)
                    del _quiet_state[name]
                else:
                    _quiet_state[name] = (users - 1, saved)


def _quiet_wire_logs():
    return quiet_loggers("botocore", "boto3", "urllib3")


@contextlib.contextmanager
def _target_errors(doing: str) -> Iterator[None]:
    """Turn botocore failures into TargetError carrying the API's own message."""
    try:
        yield
    except ClientError as exc:
        raise TargetError(f"could not {doing}: {_message(exc)}") from None
    except BotoCoreError as exc:
        raise TargetError(f"could not {doing}: {exc}") from None


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _message(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return redact.scrub(f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip())


def tag_dict(tags: list[dict] | dict | None) -> dict[str, str]:
    """AWS tags in either form (list of Key/Value, or a mapping) as a plain mapping."""
    if not tags:
        return {}
    if isinstance(tags, dict):
        return dict(tags)
    return {t.get("Key", t.get("key")): t.get("Value", t.get("value")) for t in tags}


def _refuse(kind: str, name: str, tags: dict | list | None, deployment: str) -> Refusal:
    found = tag_dict(tags)
    mark = found.get(labels.TAG_DEPLOYMENT)
    why = f"it belongs to deployment {mark!r}" if mark else "it does not carry the runbook's tags"
    return Refusal(
        f"{kind} {name!r} exists but {why}; the runbook will not adopt it. Remove or rename it, "
        f"or choose another name for deployment {deployment!r}."
    )


# --- discovery: what eksctl and EKS created -------------------------------------------------


@dataclass(frozen=True)
class ClusterNetwork:
    """The cluster's VPC and its private subnets, as the walkthrough finds them."""

    vpc_id: str
    private_subnet_ids: tuple[str, ...]


def find_cluster_vpc(session: boto3.Session, endpoint_url: str | None, cluster: str) -> str | None:
    """The VPC eksctl created for ``cluster`` (by its ``alpha.eksctl.io/cluster-name`` tag)."""
    ec2 = client(session, "ec2", endpoint_url)
    with _target_errors(f"look up the VPC of cluster {cluster}"):
        vpcs = ec2.describe_vpcs(
            Filters=[{"Name": f"tag:{TAG_EKSCTL_CLUSTER}", "Values": [cluster]}]
        )["Vpcs"]
    if not vpcs:
        return None
    if len(vpcs) > 1:
        # Two VPCs claim the cluster: the one the cluster actually uses decides.
        described = describe_cluster(session, endpoint_url, cluster) or {}
        vpc_id = described.get("resourcesVpcConfig", {}).get("vpcId")
        if vpc_id in {v["VpcId"] for v in vpcs}:
            return vpc_id
        ids = ", ".join(sorted(v["VpcId"] for v in vpcs))
        raise TargetError(f"several VPCs are tagged for cluster {cluster}: {ids}")
    return vpcs[0]["VpcId"]


def find_private_subnets(
    session: boto3.Session, endpoint_url: str | None, vpc_id: str
) -> list[str]:
    """The private subnets eksctl created in ``vpc_id``, ordered by availability zone."""
    ec2 = client(session, "ec2", endpoint_url)
    with _target_errors(f"look up the private subnets of {vpc_id}"):
        subnets = ec2.describe_subnets(
            Filters=[
                {"Name": "vpc-id", "Values": [vpc_id]},
                {"Name": f"tag:{TAG_CFN_LOGICAL_ID}", "Values": [PRIVATE_SUBNET_PATTERN]},
            ]
        )["Subnets"]
    subnets.sort(key=lambda s: (s["AvailabilityZone"], s["SubnetId"]))
    return [s["SubnetId"] for s in subnets]


def find_cluster_security_group(
    session: boto3.Session, endpoint_url: str | None, cluster: str, vpc_id: str | None = None
) -> str | None:
    """The security group EKS created for ``cluster``, or None while there is none yet.

    Found by its ``aws:eks:cluster-name`` tag (the walkthrough's query), else by the cluster's
    own ``resourcesVpcConfig.clusterSecurityGroupId``.
    """
    ec2 = client(session, "ec2", endpoint_url)
    filters = [{"Name": f"tag:{TAG_EKS_CLUSTER}", "Values": [cluster]}]
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    with _target_errors(f"look up the security group of cluster {cluster}"):
        groups = ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    if groups:
        return min(groups, key=lambda g: g["GroupId"])["GroupId"]
    described = describe_cluster(session, endpoint_url, cluster) or {}
    return described.get("resourcesVpcConfig", {}).get("clusterSecurityGroupId") or None


def wait_for_vpc(
    session: boto3.Session,
    endpoint_url: str | None,
    cluster: str,
    *,
    timeout_s: float = 1800,
    interval_s: float = 10,
    min_private_subnets: int = 2,
) -> ClusterNetwork:
    """Wait until eksctl's VPC and its private subnets exist; return them.

    eksctl creates the VPC minutes before the EKS control plane is ready, so the RDS work can
    start here while the cluster is still being created.
    """
    found: dict[str, object] = {}

    def check() -> Status:
        vpc_id = find_cluster_vpc(session, endpoint_url, cluster)
        if not vpc_id:
            return Status(False, "no VPC yet")
        subnets = find_private_subnets(session, endpoint_url, vpc_id)
        found.update(vpc_id=vpc_id, subnets=subnets)
        state = f"{vpc_id}, {len(subnets)} private subnet(s)"
        return Status(len(subnets) >= min_private_subnets, state)

    wait_for(f"VPC of cluster {cluster}", check, timeout_s, interval_s)
    network = ClusterNetwork(str(found["vpc_id"]), tuple(found["subnets"]))
    log.info(
        "found VPC %s of cluster %s with private subnets %s",
        network.vpc_id,
        cluster,
        ", ".join(network.private_subnet_ids),
    )
    return network


def wait_for_cluster_security_group(
    session: boto3.Session,
    endpoint_url: str | None,
    cluster: str,
    vpc_id: str | None = None,
    *,
    timeout_s: float = 1800,
    interval_s: float = 15,
) -> str:
    """Wait until EKS has created the cluster security group (with the control plane)."""
    found: list[str] = []

    def check() -> Status:
        group = find_cluster_security_group(session, endpoint_url, cluster, vpc_id)
        if group:
            found.append(group)
            return Status(True, group)
        described = describe_cluster(session, endpoint_url, cluster)
        state = described["status"] if described else "no cluster yet"
        return Status(False, f"cluster {state}", failed=state == "FAILED")

    status = wait_for(f"security group of cluster {cluster}", check, timeout_s, interval_s)
    if status.failed or not found:
        raise TargetError(f"EKS cluster {cluster} failed; it has no security group")
    return found[-1]


def describe_cluster(
    session: boto3.Session, endpoint_url: str | None, cluster: str
) -> dict | None:
    """The EKS cluster's description, or None when there is no such cluster."""
    eks = client(session, "eks", endpoint_url)
    try:
        return eks.describe_cluster(name=cluster)["cluster"]
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return None
        raise TargetError(f"could not describe EKS cluster {cluster}: {_message(exc)}") from None


def cluster_exists(session: boto3.Session, endpoint_url: str | None, cluster: str) -> bool:
    """True when an EKS cluster named ``cluster`` exists (in any state)."""
    return describe_cluster(session, endpoint_url, cluster) is not None


# --- RDS --------------------------------------------------------------------------------------


def ensure_db_subnet_group(
    session: boto3.Session,
    endpoint_url: str | None,
    *,
    name: str,
    subnet_ids: Iterable[str],
    deployment: str,
    description: str = "DBOS application RDS subnets",
) -> Outcome:
    """Create the DB subnet group over ``subnet_ids``, or find ours (updating its subnets)."""
    subnet_ids = sorted(set(subnet_ids))
    problems = []
    if not _SUBNET_GROUP.match(name or "") or name.lower() == "default":
        problems.append(f"DB subnet group name {name!r} is not valid")
    if len(subnet_ids) < 2:
        problems.append("a DB subnet group needs subnets in at least two availability zones")
    if problems:
        raise ParameterError(problems, source="DB subnet group")
    rds = client(session, "rds", endpoint_url)
    _check_subnet_zones(session, endpoint_url, subnet_ids)

    existing = _db_subnet_group(rds, name)
    if existing is None:
        with _target_errors(f"create DB subnet group {name}"):
            rds.create_db_subnet_group(
                DBSubnetGroupName=name,
                DBSubnetGroupDescription=description,
                SubnetIds=subnet_ids,
                Tags=labels.aws_tag_list(deployment),
            )
        log.info("created DB subnet group %s over %s", name, ", ".join(subnet_ids))
        return Outcome("DB subnet group", name, "created", detail=f"{len(subnet_ids)} subnets")

    group, tags = existing
    if not labels.is_ours_aws(tags, deployment):
        raise _refuse("DB subnet group", name, tags, deployment)
    current = sorted(s["SubnetIdentifier"] for s in group.get("Subnets", []))
    if current == subnet_ids:
        log.info("found DB subnet group %s", name)
        return Outcome("DB subnet group", name, "found", detail=f"{len(current)} subnets")
    with _target_errors(f"update DB subnet group {name}"):
        rds.modify_db_subnet_group(DBSubnetGroupName=name, SubnetIds=subnet_ids)
    log.info("updated DB subnet group %s to subnets %s", name, ", ".join(subnet_ids))
    return Outcome("DB subnet group", name, "updated", detail=f"{len(subnet_ids)} subnets")


def _check_subnet_zones(session, endpoint_url, subnet_ids: list[str]) -> None:
    ec2 = client(session, "ec2", endpoint_url)
    with _target_errors("look up the DB subnets"):
        subnets = ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]
    zones = {s["AvailabilityZone"] for s in subnets}
    if len(zones) < 2:
        raise TargetError(
            f"the DB subnets {', '.join(subnet_ids)} lie in {len(zones)} availability zone(s); "
            "RDS needs at least two"
        )


def _db_subnet_group(rds, name: str) -> tuple[dict, list] | None:
    try:
        group = rds.describe_db_subnet_groups(DBSubnetGroupName=name)["DBSubnetGroups"][0]
    except ClientError as exc:
        if _code(exc) == "DBSubnetGroupNotFoundFault":
            return None
        raise TargetError(f"could not look up DB subnet group {name}: {_message(exc)}") from None
    with _target_errors(f"read the tags of DB subnet group {name}"):
        tags = rds.list_tags_for_resource(ResourceName=group["DBSubnetGroupArn"])["TagList"]
    return group, tags


def ensure_rds_security_group(
    session: boto3.Session,
    endpoint_url: str | None,
    *,
    name: str,
    vpc_id: str,
    deployment: str,
    source_group_id: str | None = None,
    port: int = 5432,
    description: str = "Allow PostgreSQL from EKS nodes",
) -> Outcome:
    """Create or find the RDS security group; make its ingress exactly ``port`` from the source.

    With ``source_group_id`` (the EKS cluster security group) the group ends with one ingress
    rule, TCP ``port`` from that group, and nothing else: other rules are revoked. Without it
    the group is only created or found, so the RDS instance can be created before the EKS
    control plane (and its security group) exists; call again with the source to add the rule.
    """
    problems = []
    if not _SG_NAME.match(name or "") or name.lower().startswith("sg-"):
        problems.append(f"security group name {name!r} is not valid")
    if source_group_id is not None and not _SECURITY_GROUP_ID.match(source_group_id):
        problems.append(f"{source_group_id!r} is not a security group id")
    if not 1 <= port <= 65535:
        problems.append(f"port {port} is not a TCP port")
    if problems:
        raise ParameterError(problems, source="RDS security group")
    ec2 = client(session, "ec2", endpoint_url)

    group = _security_group_by_name(ec2, name, vpc_id)
    if group is None:
        tags = labels.aws_tag_list(deployment) + [{"Key": "Name", "Value": name}]
        with _target_errors(f"create security group {name}"):
            group_id = ec2.create_security_group(
                GroupName=name,
                Description=description,
                VpcId=vpc_id,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
            )["GroupId"]
        log.info("created security group %s (%s) in %s", name, group_id, vpc_id)
        action, permissions = "created", []
    else:
        if not labels.is_ours_aws(group.get("Tags"), deployment):
            raise _refuse("security group", name, group.get("Tags"), deployment)
        group_id, action, permissions = group["GroupId"], "found", group.get("IpPermissions", [])
        log.info("found security group %s (%s)", name, group_id)

    if source_group_id is None:
        detail = "no ingress yet (cluster security group not given)"
        return Outcome("security group", name, action, id=group_id, detail=detail)
    changed = _set_single_ingress(ec2, group_id, permissions, source_group_id, port)
    if changed and action == "found":
        action = "updated"
    detail = f"ingress tcp/{port} from {source_group_id} only"
    return Outcome("security group", name, action, id=group_id, detail=detail)


def _security_group_by_name(ec2, name: str, vpc_id: str | None) -> dict | None:
    filters = [{"Name": "group-name", "Values": [name]}]
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    with _target_errors(f"look up security group {name}"):
        groups = ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    return groups[0] if groups else None


def _set_single_ingress(ec2, group_id: str, permissions: list, source: str, port: int) -> bool:
    """Make ``source`` on tcp/``port`` the group's only ingress; True when anything changed."""
    wanted_present = False
    to_revoke = []
    for perm in permissions:
        is_port = (
            perm.get("IpProtocol") == "tcp"
            and perm.get("FromPort") == port
            and perm.get("ToPort") == port
        )
        pairs = perm.get("UserIdGroupPairs", [])
        keep = [p for p in pairs if is_port and p.get("GroupId") == source]
        wanted_present = wanted_present or bool(keep)
        # Everything else in this permission (CIDR ranges, other groups, other ports) goes.
        extra = {
            "IpProtocol": perm["IpProtocol"],
            "IpRanges": perm.get("IpRanges", []),
            "Ipv6Ranges": perm.get("Ipv6Ranges", []),
            "PrefixListIds": perm.get("PrefixListIds", []),
            "UserIdGroupPairs": [
                {"GroupId": p["GroupId"]} for p in pairs if p not in keep and p.get("GroupId")
            ],
        }
        if "FromPort" in perm:
            extra.update(FromPort=perm["FromPort"], ToPort=perm["ToPort"])
        if any(extra[k] for k in ("IpRanges", "Ipv6Ranges", "PrefixListIds", "UserIdGroupPairs")):
            to_revoke.append(extra)
    if to_revoke:
        with _target_errors(f"revoke extra ingress rules of {group_id}"):
            ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=to_revoke)
        log.info("revoked %d ingress rule(s) of %s that were not ours", len(to_revoke), group_id)
    if not wanted_present:
        with _target_errors(f"allow tcp/{port} from {source} into {group_id}"):
            ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": port,
                        "ToPort": port,
                        "UserIdGroupPairs": [
                            {"GroupId": source, "Description": "EKS cluster security group"}
                        ],
                    }
                ],
            )
        log.info("allowed tcp/%d from %s into %s", port, source, group_id)
    return bool(to_revoke) or not wanted_present


def check_db_instance_inputs(
    *,
    identifier: str,
    instance_class: str,
    engine_version: str,
    allocated_storage: int,
    master_username: str,
    master_password: object,
    subnet_group: str,
    security_group: str,
    port: int = 5432,
) -> list[str]:
    """Every problem with the RDS instance inputs (moto checks none of them; AWS checks late).

    Problems never quote the password.
    """
    problems = []
    if not _RDS_IDENTIFIER.match(identifier or "") or identifier.endswith("-"):
        problems.append(
            f"RDS identifier {identifier!r}: 1-63 letters, digits or hyphens, starting with a "
            "letter, no '--' and no trailing '-'"
        )
    if not _RDS_CLASS.match(instance_class or ""):
        problems.append(f"{instance_class!r} is not an RDS instance class like db.t4g.micro")
    if not _PG_VERSION.match(str(engine_version)):
        problems.append(
            f"{engine_version!r} is not a PostgreSQL version RDS offers (13 to 18, like 16 or 16.4)"
        )
    if (
        not isinstance(allocated_storage, int)
        or isinstance(allocated_storage, bool)
        or not 20 <= allocated_storage <= 65536
    ):
        problems.append(f"allocated storage {allocated_storage!r} GiB is outside 20..65536")
    if not _PG_MASTER_USER.match(master_username or "") or (
        master_username.lower() in _RESERVED_USERS or master_username.lower().startswith("pg_")
    ):
        problems.append(
            f"master user name {master_username!r}: 1-63 letters, digits or '_', starting with a "
            "letter, not reserved by RDS"
        )
    if not _password_ok(master_password):
        problems.append(
            "master password: 8 to 128 printable ASCII characters without / ' \" @ or spaces "
            "(the value is not shown)"
        )
    if not _SUBNET_GROUP.match(subnet_group or ""):
        problems.append(f"DB subnet group name {subnet_group!r} is not valid")
    if not _SECURITY_GROUP_ID.match(security_group or ""):
        problems.append(f"{security_group!r} is not a security group id (sg-…)")
    if not isinstance(port, int) or not 1150 <= port <= 65535:
        problems.append(f"port {port!r} is outside what RDS allows (1150..65535)")
    return problems


def _password_ok(password: object) -> bool:
    if not isinstance(password, str) or not 8 <= len(password) <= 128:
        return False
    return all(33 <= ord(c) <= 126 and c not in _PASSWORD_FORBIDDEN for c in password)


def ensure_db_instance(
    session: boto3.Session,
    endpoint_url: str | None,
    *,
    identifier: str,
    instance_class: str,
    engine_version: str,
    allocated_storage: int,
    master_username: str,
    master_password: str,
    subnet_group: str,
    security_group: str,
    deployment: str,
    port: int = 5432,
) -> Outcome:
    """Create the RDS PostgreSQL instance, or find ours; never adopt someone else's.

    The instance is not publicly accessible, its storage is encrypted, and its tags are copied
    to its snapshots (so a final snapshot is recognisably ours). Inputs are validated before
    any API call. Creating returns at once; :func:`wait_db_available` waits for it.
    """
    engine_version = str(engine_version)
    problems = check_db_instance_inputs(
        identifier=identifier,
        instance_class=instance_class,
        engine_version=engine_version,
        allocated_storage=allocated_storage,
        master_username=master_username,
        master_password=master_password,
        subnet_group=subnet_group,
        security_group=security_group,
        port=port,
    )
    if problems:
        raise ParameterError(problems, source="RDS instance")
    redact.register(master_password)
    rds = client(session, "rds", endpoint_url)

    existing = _db_instance(rds, identifier)
    if existing is not None:
        return _found_db_instance(
            existing, deployment, instance_class, engine_version, allocated_storage
        )

    log.info(
        "creating RDS instance %s (%s, PostgreSQL %s, %d GiB, private, encrypted)",
        identifier,
        instance_class,
        engine_version,
        allocated_storage,
    )
    with _quiet_wire_logs(), _target_errors(f"create RDS instance {identifier}"):
        created = rds.create_db_instance(
            DBInstanceIdentifier=identifier,
            DBInstanceClass=instance_class,
            Engine="postgres",
            EngineVersion=engine_version,
            MasterUsername=master_username,
            MasterUserPassword=master_password,
            AllocatedStorage=allocated_storage,
            StorageType="gp3",
            StorageEncrypted=True,
            PubliclyAccessible=False,
            DBSubnetGroupName=subnet_group,
            VpcSecurityGroupIds=[security_group],
            Port=port,
            CopyTagsToSnapshot=True,
            DeletionProtection=False,
            Tags=labels.aws_tag_list(deployment),
        )["DBInstance"]
    return Outcome(
        "RDS instance",
        identifier,
        "created",
        id=created.get("DbiResourceId", ""),
        detail=created.get("DBInstanceStatus", "creating"),
    )


def _db_instance(rds, identifier: str) -> dict | None:
    try:
        return rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    except ClientError as exc:
        if _code(exc) == "DBInstanceNotFound":
            return None
        raise TargetError(f"could not look up RDS instance {identifier}: {_message(exc)}") from None


def _found_db_instance(
    existing: dict, deployment: str, instance_class: str, engine_version: str, storage: int
) -> Outcome:
    identifier = existing["DBInstanceIdentifier"]
    if not labels.is_ours_aws(existing.get("TagList"), deployment):
        raise _refuse("RDS instance", identifier, existing.get("TagList"), deployment)
    state = existing.get("DBInstanceStatus", "")
    if state == "deleting":
        raise TargetError(f"RDS instance {identifier} is being deleted; wait, then run again")

    # A found instance is kept as it is; differences are reported, not changed behind a
    # user's back (a class or storage change restarts or slows the database).
    differences = []
    if existing.get("DBInstanceClass") != instance_class:
        differences.append(f"class {existing.get('DBInstanceClass')} (wanted {instance_class})")
    actual_version = str(existing.get("EngineVersion", ""))
    if actual_version.split(".")[0] != engine_version.split(".")[0]:
        differences.append(f"PostgreSQL {actual_version} (wanted {engine_version})")
    if existing.get("AllocatedStorage", storage) < storage:
        differences.append(f"{existing.get('AllocatedStorage')} GiB (wanted {storage})")
    if existing.get("PubliclyAccessible"):
        differences.append("publicly accessible")
    detail = state + (f"; differs: {', '.join(differences)}" if differences else "")
    if differences:
        log.warning("RDS instance %s differs from the parameters: %s", identifier, detail)
    log.info("found RDS instance %s (%s)", identifier, state)
    return Outcome("RDS instance", identifier, "found", id=existing.get("DbiResourceId", ""),
                   detail=detail)


def wait_db_available(
    session: boto3.Session,
    endpoint_url: str | None,
    *,
    identifier: str,
    timeout_s: float = 1800,
    interval_s: float = 15,
) -> tuple[str, int]:
    """Wait until the RDS instance is available; return its endpoint ``(address, port)``."""
    rds = client(session, "rds", endpoint_url)
    seen: dict = {}

    def check() -> Status:
        instance = _db_instance(rds, identifier)
        if instance is None:
            return Status(False, "not found yet")
        seen.update(instance)
        state = instance.get("DBInstanceStatus", "unknown")
        return Status(state == "available", state, failed=state in _RDS_FAILED_STATES)

    status = wait_for(f"RDS instance {identifier}", check, timeout_s, interval_s)
    if status.failed:
        raise TargetError(f"RDS instance {identifier} is {status.state}, not available")
    endpoint = seen.get("Endpoint") or {}
    if not endpoint.get("Address"):
        raise TargetError(f"RDS instance {identifier} is available but reports no endpoint")
    log.info("RDS instance %s is available at %s:%s", identifier, endpoint["Address"],
             endpoint.get("Port"))
    return endpoint["Address"], int(endpoint.get("Port", 5432))


# --- ECR --------------------------------------------------------------------------------------


class RegistryLogin(NamedTuple):
    """An ECR registry login. Its ``repr`` and ``str`` hide the password."""

    registry: str
    username: str
    password: str

    def __repr__(self) -> str:
        return (
            f"RegistryLogin(registry={self.registry!r}, username={self.username!r}, password=***)"
        )

    __str__ = __repr__


def ensure_repository(
    session: boto3.Session,
    endpoint_url: str | None,
    *,
    name: str,
    deployment: str,
    scan_on_push: bool = True,
    immutable_tags: bool = False,
) -> Outcome:
    """Create the ECR repository, or find ours and bring its settings in line.

    Tags stay mutable by default: the runbook deploys images by digest, so a moved tag cannot
    change what runs, and pushing the same tag again (a re-run) must not fail, which an
    immutable repository does. The repository URI is in ``outputs["uri"]``.
    """
    if not _ECR_REPOSITORY.match(name or "") or len(name) > 256:
        raise ParameterError([f"{name!r} is not a valid ECR repository name"], source="ECR")
    ecr = client(session, "ecr", endpoint_url)
    mutability = "IMMUTABLE" if immutable_tags else "MUTABLE"

    repo = _repository(ecr, name)
    if repo is None:
        with _target_errors(f"create ECR repository {name}"):
            repo = ecr.create_repository(
                repositoryName=name,
                imageScanningConfiguration={"scanOnPush": scan_on_push},
                imageTagMutability=mutability,
                encryptionConfiguration={"encryptionType": "AES256"},
                tags=labels.aws_tag_list(deployment),
            )["repository"]
        log.info("created ECR repository %s", repo["repositoryUri"])
        return Outcome("ECR repository", name, "created", outputs={"uri": repo["repositoryUri"]})

    with _target_errors(f"read the tags of ECR repository {name}"):
        tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    if not labels.is_ours_aws(tags, deployment):
        raise _refuse("ECR repository", name, tags, deployment)
    changes = []
    if repo.get("imageScanningConfiguration", {}).get("scanOnPush") != scan_on_push:
        with _target_errors(f"set scan on push for {name}"):
            ecr.put_image_scanning_configuration(
                repositoryName=name, imageScanningConfiguration={"scanOnPush": scan_on_push}
            )
        changes.append(f"scan on push {'on' if scan_on_push else 'off'}")
    if repo.get("imageTagMutability") != mutability:
        with _target_errors(f"set tag mutability for {name}"):
            ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability=mutability)
        changes.append(f"tags {mutability.lower()}")
    action = "updated" if changes else "found"
    log.info("%s ECR repository %s%s", action, name, f" ({', '.join(changes)})" if changes else "")
    return Outcome(
        "ECR repository", name, action, detail=", ".join(changes),
        outputs={"uri": repo["repositoryUri"]},
    )


def _repository(ecr, name: str) -> dict | None:
    try:
        return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ClientError as exc:
        if _code(exc) == "RepositoryNotFoundException":
            return None
        raise TargetError(f"could not look up ECR repository {name}: {_message(exc)}") from None


def registry_login(session: boto3.Session, endpoint_url: str | None) -> RegistryLogin:
    """The registry host and the user and password ``docker login`` needs (valid 12 hours).

    The password is registered with :mod:`runbook_lib.redact` and never logged; the returned
    value hides it when printed.
    """
    ecr = client(session, "ecr", endpoint_url)
    with _quiet_wire_logs(), _target_errors("get an ECR authorization token"):
        data = ecr.get_authorization_token()["authorizationData"][0]
    token = data["authorizationToken"]
    redact.register(token)
    try:
        username, password = base64.b64decode(token).decode().split(":", 1)
    except (ValueError, UnicodeDecodeError):
        raise TargetError("the ECR authorization token is not user:password in base64") from None
    redact.register(password)
    registry = re.sub(r"^https?://", "", data["proxyEndpoint"]).rstrip("/")
    expires = data.get("expiresAt")
    log.info(
        "obtained an ECR login for %s as %s%s",
        registry,
        username,
        f" (expires {expires:%Y-%m-%d %H:%M %Z})" if isinstance(expires, datetime) else "",
    )
    return RegistryLogin(registry, username, password)


def image_digest(
    session: boto3.Session, endpoint_url: str | None, *, repository: str, tag: str
) -> str | None:
    """The digest (``sha256:…``) that ``tag`` points to in ``repository``, or None."""
    ecr = client(session, "ecr", endpoint_url)
    try:
        details = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except ClientError as exc:
        if _code(exc) in {"ImageNotFoundException", "RepositoryNotFoundException"}:
            return None
        raise TargetError(f"could not look up image {repository}:{tag}: {_message(exc)}") from None
    images = details.get("imageDetails", [])
    return images[0]["imageDigest"] if images else None


# --- inventory --------------------------------------------------------------------------------


@dataclass
class InventoryItem:
    """One AWS resource the runbook made or might be confused with."""

    kind: str
    name: str
    id: str
    ours: bool
    detail: str = ""

    def line(self) -> str:
        mark = "ours " if self.ours else "NOT ours"
        ident = f" ({self.id})" if self.id and self.id != self.name else ""
        return f"{mark:<8} {self.kind} {self.name}{ident}" + (f": {self.detail}" if self.detail
                                                               else "")

    def as_dict(self) -> dict:
        return asdict(self)


def inventory(
    session: boto3.Session,
    endpoint_url: str | None,
    deployment: str,
    region: str,
    *,
    names: Iterable[str] = (),
) -> list[InventoryItem]:
    """What exists in ``region`` for ``deployment``, through each service's own list calls.

    Lists every EKS cluster and node group, VPC, subnet, security group, RDS instance, DB
    subnet group, manual RDS snapshot, ECR repository, IAM role (those named ``eksctl-…``) and
    CloudFormation stack that carries the deployment's tags (``ours``). Resources named in
    ``names`` are listed too whatever their tags, so a look-alike the runbook would refuse to
    touch shows up, as not ours. The tagging API cannot do this: it does not cover EKS, ECR,
    IAM or DB subnet groups.
    """
    names = set(names)
    items: list[InventoryItem] = []
    for collect in (
        _inventory_eks,
        _inventory_ec2,
        _inventory_rds,
        _inventory_ecr,
        _inventory_iam,
        _inventory_stacks,
    ):
        items.extend(collect(session, endpoint_url, deployment, region, names))
    return items


def ours(items: Iterable[InventoryItem]) -> list[InventoryItem]:
    """Only the items of the deployment the inventory was taken for."""
    return [item for item in items if item.ours]


def _item(kind: str, name: str, ident: str, tags, deployment: str, detail: str = ""):
    tags = tag_dict(tags)
    other = tags.get(labels.TAG_DEPLOYMENT)
    mine = labels.is_ours_aws(tags, deployment)
    if not mine:
        detail = "; ".join(
            x for x in (detail, f"deployment {other}" if other else "untagged") if x
        )
    return InventoryItem(kind, name, ident, mine, detail)


def _wanted(tags, deployment: str, name: str, names: set[str]) -> bool:
    return labels.is_ours_aws(tag_dict(tags), deployment) or name in names


def _inventory_eks(session, endpoint_url, deployment, region, names) -> list[InventoryItem]:
    eks = client(session, "eks", endpoint_url, region)
    items = []
    with _target_errors("list EKS clusters"):
        clusters = [c for page in eks.get_paginator("list_clusters").paginate()
                    for c in page["clusters"]]
        for name in clusters:
            cluster = eks.describe_cluster(name=name)["cluster"]
            if not _wanted(cluster.get("tags"), deployment, name, names):
                continue
            items.append(_item("EKS cluster", name, cluster.get("arn", ""), cluster.get("tags"),
                               deployment, cluster.get("status", "")))
            nodegroups = eks.list_nodegroups(clusterName=name).get("nodegroups", [])
            for ng_name in nodegroups:
                ng = eks.describe_nodegroup(clusterName=name, nodegroupName=ng_name)["nodegroup"]
                items.append(_item("EKS node group", f"{name}/{ng_name}", "", ng.get("tags"),
                                   deployment, ng.get("status", "")))
    return items


def _inventory_ec2(session, endpoint_url, deployment, region, names) -> list[InventoryItem]:
    ec2 = client(session, "ec2", endpoint_url, region)
    marked = [{"Name": f"tag:{k}", "Values": [v]} for k, v in labels.aws_tags(deployment).items()]
    items = []
    with _target_errors("list VPCs, subnets and security groups"):
        for vpc in ec2.describe_vpcs(Filters=marked)["Vpcs"]:
            name = tag_dict(vpc.get("Tags")).get("Name", vpc["VpcId"])
            items.append(_item("VPC", name, vpc["VpcId"], vpc.get("Tags"), deployment))
        for subnet in ec2.describe_subnets(Filters=marked)["Subnets"]:
            tags = tag_dict(subnet.get("Tags"))
            name = tags.get(TAG_CFN_LOGICAL_ID) or tags.get("Name") or subnet["SubnetId"]
            items.append(_item("subnet", name, subnet["SubnetId"], subnet.get("Tags"), deployment,
                               subnet.get("AvailabilityZone", "")))
        groups = {g["GroupId"]: g for g in ec2.describe_security_groups(Filters=marked)
                  ["SecurityGroups"]}
        if names:
            by_name = [{"Name": "group-name", "Values": sorted(names)}]
            for group in ec2.describe_security_groups(Filters=by_name)["SecurityGroups"]:
                groups.setdefault(group["GroupId"], group)
    for group in groups.values():
        items.append(_item("security group", group["GroupName"], group["GroupId"],
                           group.get("Tags"), deployment, group.get("VpcId", "")))
    return items


def _inventory_rds(session, endpoint_url, deployment, region, names) -> list[InventoryItem]:
    rds = client(session, "rds", endpoint_url, region)
    items = []
    with _target_errors("list RDS instances, subnet groups and snapshots"):
        for page in rds.get_paginator("describe_db_instances").paginate():
            for db in page["DBInstances"]:
                ident = db["DBInstanceIdentifier"]
                if _wanted(db.get("TagList"), deployment, ident, names):
                    items.append(_item("RDS instance", ident, db.get("DbiResourceId", ""),
                                       db.get("TagList"), deployment,
                                       db.get("DBInstanceStatus", "")))
        for page in rds.get_paginator("describe_db_subnet_groups").paginate():
            for group in page["DBSubnetGroups"]:
                name = group["DBSubnetGroupName"]
                tags = rds.list_tags_for_resource(ResourceName=group["DBSubnetGroupArn"])["TagList"]
                if _wanted(tags, deployment, name, names):
                    items.append(_item("DB subnet group", name, "", tags, deployment,
                                       group.get("VpcId", "")))
        pages = rds.get_paginator("describe_db_snapshots").paginate(SnapshotType="manual")
        for page in pages:
            for snap in page["DBSnapshots"]:
                if _wanted(snap.get("TagList"), deployment, snap["DBSnapshotIdentifier"], names):
                    items.append(_item("RDS snapshot", snap["DBSnapshotIdentifier"], "",
                                       snap.get("TagList"), deployment,
                                       f"of {snap.get('DBInstanceIdentifier', '?')}"))
    return items


def _inventory_ecr(session, endpoint_url, deployment, region, names) -> list[InventoryItem]:
    ecr = client(session, "ecr", endpoint_url, region)
    items = []
    with _target_errors("list ECR repositories"):
        for page in ecr.get_paginator("describe_repositories").paginate():
            for repo in page["repositories"]:
                tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
                if _wanted(tags, deployment, repo["repositoryName"], names):
                    items.append(_item("ECR repository", repo["repositoryName"], "", tags,
                                       deployment, repo.get("repositoryUri", "")))
    return items


def _inventory_iam(session, endpoint_url, deployment, region, names) -> list[InventoryItem]:
    # IAM is global and an account may hold hundreds of roles: only eksctl's (by name) and
    # named ones are read tag by tag.
    iam = client(session, "iam", endpoint_url, region)
    items = []
    with _target_errors("list IAM roles"):
        for page in iam.get_paginator("list_roles").paginate():
            for role in page["Roles"]:
                name = role["RoleName"]
                if not (name.startswith("eksctl-") or name in names):
                    continue
                tags = iam.list_role_tags(RoleName=name)["Tags"]
                if _wanted(tags, deployment, name, names):
                    items.append(_item("IAM role", name, "", tags, deployment))
    return items


def _inventory_stacks(session, endpoint_url, deployment, region, names) -> list[InventoryItem]:
    cfn = client(session, "cloudformation", endpoint_url, region)
    items = []
    with _target_errors("list CloudFormation stacks"):
        for page in cfn.get_paginator("describe_stacks").paginate():
            for stack in page["Stacks"]:
                if stack.get("StackStatus") == "DELETE_COMPLETE":
                    continue
                if _wanted(stack.get("Tags"), deployment, stack["StackName"], names):
                    items.append(_item("CloudFormation stack", stack["StackName"], "",
                                       stack.get("Tags"), deployment, stack.get("StackStatus", "")))
    return items


# --- cleanup, in the reverse order of creation ------------------------------------------------


def final_snapshot_identifier(identifier: str, now: datetime | None = None) -> str:
    """The final snapshot's name: the instance's, ``-final-`` and a UTC timestamp."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{identifier}-final-{now:%Y%m%d-%H%M%S}"


def delete_db_instance(
    session: boto3.Session,
    endpoint_url: str | None,
    *,
    identifier: str,
    deployment: str,
    skip_final_snapshot: bool = False,
    now: datetime | None = None,
    timeout_s: float = 1800,
    interval_s: float = 15,
) -> list[Outcome]:
    """Start deleting our RDS instance (with a tagged final snapshot unless told to skip).

    Returns the instance's outcome (deleted, absent or refused) and, when one is taken, the
    snapshot's. An instance still being created or modified is waited for until RDS accepts
    the deletion. :func:`wait_db_deleted` waits for it to be gone.
    """
    rds = client(session, "rds", endpoint_url)
    instance = _db_instance(rds, identifier)
    if instance is None:
        log.info("RDS instance %s is absent", identifier)
        return [Outcome("RDS instance", identifier, "absent")]
    if not labels.is_ours_aws(instance.get("TagList"), deployment):
        log.warning("refusing to delete RDS instance %s: it is not ours", identifier)
        return [Outcome("RDS instance", identifier, "refused", detail="not tagged as ours")]
    if instance.get("DBInstanceStatus") == "deleting":
        log.info("RDS instance %s is already being deleted", identifier)
        return [Outcome("RDS instance", identifier, "deleted", detail="already deleting")]

    snapshot = None if skip_final_snapshot else final_snapshot_identifier(identifier, now)
    request = {"DBInstanceIdentifier": identifier, "DeleteAutomatedBackups": True}
    if snapshot:
        request.update(SkipFinalSnapshot=False, FinalDBSnapshotIdentifier=snapshot)
    else:
        request.update(SkipFinalSnapshot=True)

    def attempt() -> Status:
        try:
            rds.delete_db_instance(**request)
        except ClientError as exc:
            if _code(exc) == "InvalidDBInstanceState":
                return Status(False, "busy; RDS does not accept the deletion yet")
            if _code(exc) == "DBInstanceNotFound":
                return Status(True, "gone")
            raise TargetError(f"could not delete RDS instance {identifier}: {_message(exc)}") \
                from None
        return Status(True, "deleting")

    wait_for(f"deletion of RDS instance {identifier} to start", attempt, timeout_s, interval_s)
    log.info("deleting RDS instance %s%s", identifier,
             f" with final snapshot {snapshot}" if snapshot else " without a final snapshot")
    outcomes = [Outcome("RDS instance", identifier, "deleted",
                        detail=f"final snapshot {snapshot}" if snapshot else "no final snapshot")]
    if snapshot:
        _tag_snapshot(rds, snapshot, deployment)
        outcomes.append(Outcome("RDS snapshot", snapshot, "created", detail=f"of {identifier}"))
    return outcomes


def _tag_snapshot(rds, snapshot: str, deployment: str) -> None:
    # The instance copies its tags to snapshots; tagging again covers an instance made
    # without that setting. The snapshot may not be listed yet right after the delete call.
    try:
        arn = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot)["DBSnapshots"][0][
            "DBSnapshotArn"
        ]
        rds.add_tags_to_resource(ResourceName=arn, Tags=labels.aws_tag_list(deployment))
    except ClientError as exc:
        log.debug("final snapshot %s not tagged yet: %s", snapshot, _message(exc))


def wait_db_deleted(
    session: boto3.Session,
    endpoint_url: str | None,
    *,
    identifier: str,
    timeout_s: float = 1800,
    interval_s: float = 15,
) -> Outcome:
    """Wait until the RDS instance no longer exists."""
    rds = client(session, "rds", endpoint_url)

    def check() -> Status:
        instance = _db_instance(rds, identifier)
        if instance is None:
            return Status(True, "deleted")
        state = instance.get("DBInstanceStatus", "unknown")
        # Anything but "deleting" means nobody is deleting it: waiting would not end.
        return Status(False, state, failed=state != "deleting")

    status = wait_for(f"RDS instance {identifier} to be deleted", check, timeout_s, interval_s)
    if status.failed:
        raise TargetError(f"RDS instance {identifier} is {status.state}, not being deleted")
    return Outcome("RDS instance", identifier, "waited", detail="deleted")


def _db_users(rds) -> list[dict]:
    with _target_errors("list RDS instances"):
        return [db for page in rds.get_paginator("describe_db_instances").paginate()
                for db in page["DBInstances"]]


def delete_rds_security_group(
    session: boto3.Session,
    endpoint_url: str | None,
    *,
    name: str,
    deployment: str,
    vpc_id: str | None = None,
    timeout_s: float = 900,
    interval_s: float = 15,
) -> list[Outcome]:
    """Delete our security group(s) named ``name``; refuse those that are not ours.

    A group still attached to an RDS instance is skipped when that instance is not being
    deleted, and waited for when it is (its network interfaces linger for a while).
    """
    ec2 = client(session, "ec2", endpoint_url)
    rds = client(session, "rds", endpoint_url)
    filters = [{"Name": "group-name", "Values": [name]}]
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    with _target_errors(f"look up security group {name}"):
        groups = ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    if not groups:
        log.info("security group %s is absent", name)
        return [Outcome("security group", name, "absent")]

    outcomes = []
    for group in groups:
        group_id = group["GroupId"]
        if not labels.is_ours_aws(group.get("Tags"), deployment):
            log.warning("refusing to delete security group %s (%s): it is not ours", name,
                        group_id)
            outcomes.append(Outcome("security group", name, "refused", id=group_id,
                                    detail="not tagged as ours"))
            continue
        outcomes.append(_delete_group(ec2, rds, name, group_id, timeout_s, interval_s))
    return outcomes


def _delete_group(ec2, rds, name, group_id, timeout_s, interval_s) -> Outcome:
    blocked: list[str] = []

    def attempt() -> Status:
        users = [db for db in _db_users(rds)
                 if group_id in {g["VpcSecurityGroupId"] for g in db.get("VpcSecurityGroups", [])}]
        keep = [db["DBInstanceIdentifier"] for db in users if db["DBInstanceStatus"] != "deleting"]
        if keep:
            blocked.extend(keep)
            return Status(True, "in use")
        if users:
            return Status(False, "in use by an RDS instance being deleted")
        try:
            ec2.delete_security_group(GroupId=group_id)
        except ClientError as exc:
            if _code(exc) == "DependencyViolation":
                return Status(False, "still in use (network interfaces)")
            if _code(exc) == "InvalidGroup.NotFound":
                return Status(True, "gone")
            raise TargetError(f"could not delete security group {name}: {_message(exc)}") \
                from None
        return Status(True, "deleted")

    wait_for(f"deletion of security group {name}", attempt, timeout_s, interval_s)
    if blocked:
        detail = f"still used by RDS instance {', '.join(sorted(set(blocked)))}"
        log.warning("not deleting security group %s (%s): %s", name, group_id, detail)
        return Outcome("security group", name, "skipped", id=group_id, detail=detail)
    log.info("deleted security group %s (%s)", name, group_id)
    return Outcome("security group", name, "deleted", id=group_id)


def delete_db_subnet_group(
    session: boto3.Session,
    endpoint_url: str | None,
    *,
    name: str,
    deployment: str,
    timeout_s: float = 900,
    interval_s: float = 15,
) -> Outcome:
    """Delete our DB subnet group; refuse one that is not ours; skip one still in use."""
    rds = client(session, "rds", endpoint_url)
    existing = _db_subnet_group(rds, name)
    if existing is None:
        log.info("DB subnet group %s is absent", name)
        return Outcome("DB subnet group", name, "absent")
    group, tags = existing
    if not labels.is_ours_aws(tags, deployment):
        log.warning("refusing to delete DB subnet group %s: it is not ours", name)
        return Outcome("DB subnet group", name, "refused", detail="not tagged as ours")
    blocked: list[str] = []

    def attempt() -> Status:
        users = [db for db in _db_users(rds)
                 if db.get("DBSubnetGroup", {}).get("DBSubnetGroupName") == group[
                     "DBSubnetGroupName"]]
        keep = [db["DBInstanceIdentifier"] for db in users if db["DBInstanceStatus"] != "deleting"]
        if keep:
            blocked.extend(keep)
            return Status(True, "in use")
        if users:
            return Status(False, "in use by an RDS instance being deleted")
        try:
            rds.delete_db_subnet_group(DBSubnetGroupName=name)
        except ClientError as exc:
            if _code(exc) == "InvalidDBSubnetGroupStateFault":
                return Status(False, "still in use")
            if _code(exc) == "DBSubnetGroupNotFoundFault":
                return Status(True, "gone")
            raise TargetError(f"could not delete DB subnet group {name}: {_message(exc)}") \
                from None
        return Status(True, "deleted")

    wait_for(f"deletion of DB subnet group {name}", attempt, timeout_s, interval_s)
    if blocked:
        detail = f"still used by RDS instance {', '.join(sorted(set(blocked)))}"
        log.warning("not deleting DB subnet group %s: %s", name, detail)
        return Outcome("DB subnet group", name, "skipped", detail=detail)
    log.info("deleted DB subnet group %s", name)
    return Outcome("DB subnet group", name, "deleted")


def delete_repositories(
    session: boto3.Session, endpoint_url: str | None, *, names: Iterable[str], deployment: str
) -> list[Outcome]:
    """Delete our ECR repositories with their images (force); refuse those not ours."""
    ecr = client(session, "ecr", endpoint_url)
    outcomes = []
    for name in names:
        repo = _repository(ecr, name)
        if repo is None:
            log.info("ECR repository %s is absent", name)
            outcomes.append(Outcome("ECR repository", name, "absent"))
            continue
        with _target_errors(f"read the tags of ECR repository {name}"):
            tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
        if not labels.is_ours_aws(tags, deployment):
            log.warning("refusing to delete ECR repository %s: it is not ours", name)
            outcomes.append(Outcome("ECR repository", name, "refused",
                                    detail="not tagged as ours"))
            continue
        try:
            ecr.delete_repository(repositoryName=name, force=True)
        except ClientError as exc:
            if _code(exc) != "RepositoryNotFoundException":
                raise TargetError(f"could not delete ECR repository {name}: {_message(exc)}") \
                    from None
        log.info("deleted ECR repository %s and its images", name)
        outcomes.append(Outcome("ECR repository", name, "deleted"))
    return outcomes


def cleanup(
    session: boto3.Session,
    endpoint_url: str | None,
    *,
    deployment: str,
    db_instance: str,
    rds_security_group: str,
    db_subnet_group: str,
    repositories: Iterable[str],
    skip_final_snapshot: bool = False,
    vpc_id: str | None = None,
    timeout_s: float = 1800,
    interval_s: float = 15,
) -> list[Outcome]:
    """Tear down the RDS and ECR resources in the walkthrough's reverse order.

    RDS instance (final snapshot unless skipped), wait until it is gone, RDS security group,
    DB subnet group, ECR repositories. Each step tolerates a resource that was never created
    and leaves in place, with a "refused" outcome, whatever lacks our tags. Delete the cluster
    (the cluster tool) only after this: its VPC cannot go while RDS still uses it.
    """
    outcomes = delete_db_instance(
        session, endpoint_url, identifier=db_instance, deployment=deployment,
        skip_final_snapshot=skip_final_snapshot, timeout_s=timeout_s, interval_s=interval_s,
    )
    if outcomes[0].action == "deleted":
        outcomes.append(wait_db_deleted(session, endpoint_url, identifier=db_instance,
                                        timeout_s=timeout_s, interval_s=interval_s))
    outcomes += delete_rds_security_group(
        session, endpoint_url, name=rds_security_group, deployment=deployment, vpc_id=vpc_id,
        timeout_s=timeout_s, interval_s=interval_s,
    )
    outcomes.append(delete_db_subnet_group(
        session, endpoint_url, name=db_subnet_group, deployment=deployment,
        timeout_s=timeout_s, interval_s=interval_s,
    ))
    outcomes += delete_repositories(session, endpoint_url, names=repositories,
                                    deployment=deployment)
    return outcomes
