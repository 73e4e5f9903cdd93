"""The runbook's parameters: one typed model for every stage, loaded from YAML.

A run's parameters are ``parameters/base.yaml`` (the walkthrough's values), then a target file
(``parameters/eks.yaml``, ``parameters/sandbox.yaml`` or your own), then overrides (``--set
key.path=value`` on the command line, or the values papermill injects into a notebook), merged in
that order. :func:`load` validates the result and reports every problem at once, before anything
is created or called.

The top-level keys are also the notebooks' papermill parameters: a stage notebook declares the
groups it uses, so ``papermill notebooks/<stage>.ipynb out.ipynb -f parameters/sandbox.yaml``
works as a CI job would call it. Secret values are never parameters: a secret parameter names a
source (see :mod:`runbook_lib.secret_sources`).
"""

from __future__ import annotations

import copy
import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runbook_lib.errors import ParameterError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PARAMETERS_DIR = PROJECT_ROOT / "parameters"
BASE_FILE = PARAMETERS_DIR / "base.yaml"
SANDBOX_FILE = PARAMETERS_DIR / "sandbox.yaml"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
RECORDS_DIR = PROJECT_ROOT / "records"

# The top-level groups, in the order a reader meets them.
GROUPS = (
    "target", "deployment", "aws", "cluster", "database", "secrets", "images", "app",
    "autoscaling", "load_test", "upgrade", "addons", "timeouts", "gates",
)

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_RDS_IDENTIFIER = re.compile(r"^[a-zA-Z](?!.*--)[a-zA-Z0-9-]{0,62}$")
_PG_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_REGION = re.compile(r"^(us|eu|ap|sa|ca|me|af|il|mx)(-gov)?-[a-z]+-\d$")
_K8S_VERSION = re.compile(r"^1\.(\d{2})$")
_EC2_TYPE = re.compile(
    r"^[a-z][a-z0-9-]*\d[a-z0-9-]*\.(nano|micro|small|medium|large|xlarge|\d+xlarge|metal)$"
)
_RDS_CLASS = re.compile(
    r"^db\.[a-z][a-z0-9-]*\d[a-z0-9-]*\.(micro|small|medium|large|xlarge|\d+xlarge)$"
)
_PG_VERSION = re.compile(r"^(1[3-8])(\.\d+)?$")
_CPU = re.compile(r"^(\d+(\.\d+)?|\d+m)$")
_MEMORY = re.compile(r"^\d+(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

# Kubernetes versions EKS supports in standard or extended support.
EKS_VERSIONS = tuple(f"1.{m}" for m in range(28, 35))


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"1h30m"``; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 90s, 15m, 1h30m")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = str(value).strip()
    match = _DURATION.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration (use seconds, or text like 90s, 15m, 1h30m)")
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


Duration = float


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _duration_fields(*names: str):
    return field_validator(*names, mode="before")(lambda cls, v: parse_duration(v))


def _dns_label(value: str, what: str = "name") -> str:
    if len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid {what}: lower-case letters, digits and '-', starting and "
            "ending with a letter or digit, at most 63 characters (DNS-1123 label)"
        )
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a valid Kubernetes object name: lower-case letters, digits, '-' "
            "and '.', starting and ending with a letter or digit (DNS-1123 subdomain)"
        )
    return value


def _app_version(value: Any) -> str:
    text = str(value)
    if not _IMAGE_TAG.match(text) or not _DNS1123_LABEL.match(text) or len(text) > 40:
        raise ValueError(
            f"{text!r} cannot be an application version: it is an image tag, a label value and "
            "a Deployment name suffix (lower-case letters, digits, '-', at most 40 characters)"
        )
    return text


class AwsParams(_Group):
    region: str = "us-west-2"
    profile: str | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not _REGION.match(v):
            raise ValueError(f"{v!r} is not an AWS region name (like us-west-2)")
        return v


class ClusterParams(_Group):
    name: str = "dbos-app-cluster"
    version: str = "1.31"
    nodegroup: str = "default"
    instance_type: str = "t3.medium"
    nodes: int = 2
    min_nodes: int = 2
    max_nodes: int = 2
    vpc_cidr: str = "192.168.0.0/16"

    @field_validator("name", "nodegroup")
    @classmethod
    def _names(cls, v: str) -> str:
        return _dns_label(v, "cluster or node group name")

    @field_validator("version")
    @classmethod
    def _version(cls, v: Any) -> str:
        text = str(v)
        if not _K8S_VERSION.match(text):
            raise ValueError(f"{text!r} is not a Kubernetes minor version like 1.31")
        if text not in EKS_VERSIONS:
            raise ValueError(f"Kubernetes {text} is not offered by EKS (use one of "
                             f"{', '.join(EKS_VERSIONS)})")
        return text

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        if not _EC2_TYPE.match(v):
            raise ValueError(f"{v!r} is not an EC2 instance type like t3.medium")
        return v

    @field_validator("nodes", "min_nodes", "max_nodes")
    @classmethod
    def _node_count(cls, v: int) -> int:
        if not 1 <= v <= 100:
            raise ValueError(f"{v} nodes is outside 1..100")
        return v

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            net = ipaddress.ip_network(v, strict=True)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a CIDR block ({exc})") from None
        if net.version != 4 or not 16 <= net.prefixlen <= 24:
            raise ValueError(f"{v!r}: a VPC CIDR is an IPv4 block from /16 to /24")
        return v


class DatabaseParams(_Group):
    instance_id: str = "dbos-app-pg"
    instance_class: str = "db.t4g.micro"
    engine_version: str = "16"
    allocated_storage_gib: int = 20
    master_username: str = "postgres"
    name: str = "dbos_app"
    app_role: str = "dbos_app_role"
    port: int = 5432
    subnet_group: str = "dbos-app-db"
    security_group: str = "dbos-app-rds"
    final_snapshot: bool = True

    @field_validator("instance_id")
    @classmethod
    def _identifier(cls, v: str) -> str:
        if not _RDS_IDENTIFIER.match(v) or v.endswith("-"):
            raise ValueError(
                f"{v!r} is not a valid RDS identifier: 1-63 letters, digits or hyphens, "
                "starting with a letter, no two hyphens in a row, not ending with a hyphen"
            )
        return v

    @field_validator("instance_class")
    @classmethod
    def _class(cls, v: str) -> str:
        if not _RDS_CLASS.match(v):
            raise ValueError(f"{v!r} is not an RDS instance class like db.t4g.micro")
        return v

    @field_validator("engine_version", mode="before")
    @classmethod
    def _engine(cls, v: Any) -> str:
        text = str(v)
        if not _PG_VERSION.match(text):
            raise ValueError(f"{text!r} is not a PostgreSQL version RDS offers (13 to 18)")
        return text

    @field_validator("allocated_storage_gib")
    @classmethod
    def _storage(cls, v: int) -> int:
        if not 20 <= v <= 65536:
            raise ValueError(f"{v} GiB is outside what RDS PostgreSQL allows (20..65536)")
        return v

    @field_validator("master_username", "name", "app_role")
    @classmethod
    def _pg_name(cls, v: str) -> str:
        if not _PG_IDENTIFIER.match(v):
            raise ValueError(f"{v!r} is not a plain PostgreSQL identifier (a-z, 0-9, _)")
        if v in {"rdsadmin", "rds_superuser", "public", "pg_monitor"}:
            raise ValueError(f"{v!r} is reserved on RDS")
        return v

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 1150 <= v <= 65535:
            raise ValueError(f"port {v} is outside what RDS allows (1150..65535)")
        return v

    @field_validator("subnet_group", "security_group")
    @classmethod
    def _aws_name(cls, v: str) -> str:
        if not re.match(r"^[a-zA-Z][a-zA-Z0-9-]{0,254}$", v):
            raise ValueError(f"{v!r} is not a valid name (letters, digits, hyphens)")
        return v


class SecretNames(_Group):
    admin: str = "postgres-admin"
    app_db: str = "dbos-app-db"
    conductor: str = "conductor-api-key"

    @field_validator("admin", "app_db", "conductor")
    @classmethod
    def _names(cls, v: str) -> str:
        return _dns_subdomain(v)


class SecretsParams(_Group):
    postgres_password: str = "env:POSTGRES_PASSWORD"
    app_role_password: str = "env:APP_ROLE_PASSWORD"
    conductor_api_key: str = "env:CONDUCTOR_API_KEY | none"
    names: SecretNames = Field(default_factory=SecretNames)
    scope: Literal["strict", "namespace-wide", "cluster-wide"] = "strict"

    @field_validator("postgres_password", "app_role_password", "conductor_api_key")
    @classmethod
    def _source(cls, v: str) -> str:
        from runbook_lib.secret_sources import check_source

        check_source(v)
        return v


class ImagesParams(_Group):
    app_repository: str = "dbos-app"
    migrate_repository: str = "dbos-migrate"
    platform: str = "linux/amd64"

    @field_validator("app_repository", "migrate_repository")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not _REPOSITORY.match(v) or len(v) > 256:
            raise ValueError(f"{v!r} is not a valid ECR repository name")
        return v


class Resources(_Group):
    cpu: str
    memory: str

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, v: Any) -> str:
        if not _CPU.match(str(v)):
            raise ValueError(f"{v!r} is not a CPU quantity like 500m or 2")
        return str(v)

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> str:
        if not _MEMORY.match(str(v)):
            raise ValueError(f"{v!r} is not a memory quantity like 256Mi")
        return str(v)


class ProbeParams(_Group):
    readiness_initial_delay: int = 5
    readiness_period: int = 10
    liveness_initial_delay: int = 10
    liveness_period: int = 30

    @field_validator("*")
    @classmethod
    def _seconds(cls, v: int) -> int:
        if not 0 <= v <= 3600:
            raise ValueError(f"{v} s is outside 0..3600")
        return v


class AppParams(_Group):
    name: str = "dbos-app"
    namespace: str = "dbos"
    version: str = "v1"
    replicas: int = 2
    port: int = 8080
    queue: str = "taskQueue"
    worker_concurrency: int = 2
    drain_seconds: Duration = 20
    requests: Resources = Field(default_factory=lambda: Resources(cpu="500m", memory="256Mi"))
    limits: Resources = Field(default_factory=lambda: Resources(cpu="2", memory="512Mi"))
    conductor_url: str | None = "wss://conductor.dbos.dev/"
    conductor_tls_secret: str | None = None
    migrate_job: str = "dbos-migrate"
    probes: ProbeParams = Field(default_factory=ProbeParams)

    _durations = _duration_fields("drain_seconds")

    @field_validator("name", "namespace")
    @classmethod
    def _label(cls, v: str) -> str:
        return _dns_label(v)

    @field_validator("conductor_tls_secret", "migrate_job")
    @classmethod
    def _object_name(cls, v: str | None) -> str | None:
        return None if v is None else _dns_subdomain(v)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> str:
        return _app_version(v)

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, v: int) -> int:
        if not 1 <= v <= 100:
            raise ValueError(f"{v} replicas is outside 1..100")
        return v

    @field_validator("port")
    @classmethod
    def _port(cls, v: int) -> int:
        if not 1 <= v <= 65535:
            raise ValueError(f"port {v} is outside 1..65535")
        return v

    @field_validator("worker_concurrency")
    @classmethod
    def _concurrency(cls, v: int) -> int:
        if not 1 <= v <= 1000:
            raise ValueError(f"worker concurrency {v} is outside 1..1000")
        return v

    @field_validator("queue")
    @classmethod
    def _queue(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.-]{1,100}$", v):
            raise ValueError(f"{v!r} is not a queue name (letters, digits, '_', '.', '-')")
        return v

    @field_validator("conductor_url")
    @classmethod
    def _conductor(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not re.match(r"^wss?://[A-Za-z0-9.-]+(:\d{1,5})?(/[^\s]*)?$", v):
            raise ValueError(f"{v!r}: the Conductor URL must be a ws:// or wss:// URL")
        return v


class AutoscalingParams(_Group):
    scaled_object: str = "dbos-app-scaledobject"
    target_value: int = 2
    min_replicas: int = 1
    max_replicas: int = 10
    polling_interval: Duration = 15
    cooldown_period: Duration = 60
    scale_down_window: Duration = 60

    _durations = _duration_fields("polling_interval", "cooldown_period", "scale_down_window")

    @field_validator("scaled_object")
    @classmethod
    def _name(cls, v: str) -> str:
        return _dns_subdomain(v)

    @field_validator("target_value")
    @classmethod
    def _target(cls, v: int) -> int:
        if v < 1:
            raise ValueError("the target value must be at least 1")
        return v

    @field_validator("min_replicas")
    @classmethod
    def _min(cls, v: int) -> int:
        if v < 1:
            raise ValueError(
                "min_replicas must be at least 1: the metrics-api trigger polls the app itself"
            )
        return v


class LoadTestParams(_Group):
    workflows: int = 10
    seconds: Duration = 60
    settle_timeout: Duration = "15m"

    _durations = _duration_fields("seconds", "settle_timeout")

    @field_validator("workflows")
    @classmethod
    def _count(cls, v: int) -> int:
        if not 1 <= v <= 1000:
            raise ValueError(f"{v} workflows is outside 1..1000")
        return v


class UpgradeParams(_Group):
    from_version: str = "v1"
    to_version: str = "v2"
    inflight_workflows: int = 2
    inflight_seconds: Duration = 30

    _durations = _duration_fields("inflight_seconds")

    @field_validator("from_version", "to_version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> str:
        return _app_version(v)


class AddonsParams(_Group):
    sealed_secrets_chart_version: str | None = None
    keda_chart_version: str | None = None


class TimeoutsParams(_Group):
    cluster: Duration = "30m"
    rds: Duration = "30m"
    addons: Duration = "10m"
    job: Duration = "10m"
    rollout: Duration = "10m"
    secrets: Duration = "2m"
    cleanup: Duration = "40m"
    gate: Duration = "15m"

    _durations = _duration_fields("cluster", "rds", "addons", "job", "rollout", "secrets",
                                  "cleanup", "gate")

    @field_validator("*")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("a timeout must be more than 0 s")
        return v


class GatesParams(_Group):
    """Answers to the confirmation gates when no one is there to click (papermill, CI)."""

    confirm_create: str = ""
    confirm_cleanup: str = ""


class Parameters(_Group):
    """Every input of every stage."""

    target: Literal["sandbox", "eks"] = "sandbox"
    deployment: str = ""
    aws: AwsParams = Field(default_factory=AwsParams)
    cluster: ClusterParams = Field(default_factory=ClusterParams)
    database: DatabaseParams = Field(default_factory=DatabaseParams)
    secrets: SecretsParams = Field(default_factory=SecretsParams)
    images: ImagesParams = Field(default_factory=ImagesParams)
    app: AppParams = Field(default_factory=AppParams)
    autoscaling: AutoscalingParams = Field(default_factory=AutoscalingParams)
    load_test: LoadTestParams = Field(default_factory=LoadTestParams)
    upgrade: UpgradeParams = Field(default_factory=UpgradeParams)
    addons: AddonsParams = Field(default_factory=AddonsParams)
    timeouts: TimeoutsParams = Field(default_factory=TimeoutsParams)
    gates: GatesParams = Field(default_factory=GatesParams)

    @property
    def deployment_id(self) -> str:
        """The name every tag and label carries: the deployment, else the cluster's name."""
        return self.deployment or self.cluster.name

    def public_dict(self) -> dict:
        """The parameters as plain data, for the record. Secrets appear only as source names."""
        return self.model_dump(mode="json")


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def cross_check(values: dict) -> list[str]:
    """Problems that involve more than one field, checked on the raw merged values.

    They run even when single fields are wrong, so that one error lists everything; a check
    whose inputs are themselves unreadable is left to the field's own message.
    """
    full = deep_merge(Parameters().model_dump(mode="json"), values)
    problems = []
    c, a, app, up = full["cluster"], full["autoscaling"], full["app"], full["upgrade"]
    low, mid, high = (_number(c.get(k)) for k in ("min_nodes", "nodes", "max_nodes"))
    if None not in (low, mid, high) and not low <= mid <= high:
        problems.append(
            "cluster: node counts must satisfy min_nodes <= nodes <= max_nodes "
            f"(got {c['min_nodes']} <= {c['nodes']} <= {c['max_nodes']})"
        )
    low, high, replicas = (_number(x) for x in (a.get("min_replicas"), a.get("max_replicas"),
                                                app.get("replicas")))
    if None not in (low, high) and low > high:
        problems.append(
            "autoscaling: replica bounds must satisfy 1 <= min_replicas <= max_replicas "
            f"(got min {a['min_replicas']}, max {a['max_replicas']})"
        )
    elif None not in (low, high, replicas) and not low <= replicas <= high:
        problems.append(
            f"app.replicas ({app['replicas']}) must lie within the autoscaling bounds "
            f"{a['min_replicas']}..{a['max_replicas']}"
        )
    if str(up.get("from_version")) == str(up.get("to_version")):
        problems.append("upgrade: from_version and to_version must differ")
    elif str(up.get("from_version")) != str(app.get("version")):
        problems.append(
            f"upgrade.from_version ({up['from_version']}) must be the deployed "
            f"app.version ({app['version']})"
        )
    deployment = full.get("deployment")
    if deployment and not _DNS1123_LABEL.match(str(deployment)):
        problems.append(f"deployment: {deployment!r} is not a DNS-1123 label")
    if app.get("conductor_tls_secret") and not app.get("conductor_url"):
        problems.append("app.conductor_tls_secret is set but app.conductor_url is not")
    return problems


def _format_error(err: dict) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown parameter (check the spelling)"
    message = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if err["type"] in {"int_parsing", "int_type", "float_parsing", "bool_parsing",
                       "string_type", "literal_error", "int_from_float"}:
        message = f"{message} (got {err.get('input')!r})"
    return f"{where}: {message}"


def deep_merge(base: dict, override: dict) -> dict:
    """A new dict: ``override`` merged into ``base``, recursively for nested mappings."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_yaml(path: Path) -> dict:
    """Read one parameters file; a file that is not a mapping is a ParameterError."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ParameterError([f"{path}: no such parameters file"], str(path)) from None
    except yaml.YAMLError as exc:
        raise ParameterError([f"{path}: not valid YAML ({exc})"], str(path)) from None
    if not isinstance(data, dict):
        raise ParameterError([f"{path}: the top level must be a mapping"], str(path))
    return data


def parse_override(text: str) -> dict:
    """``a.b.c=value`` (value read as YAML) as a nested dict."""
    if "=" not in text:
        raise ParameterError([f"override {text!r} is not of the form key.path=value"])
    path, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    keys = path.strip().split(".")
    nested: dict = {}
    cursor = nested
    for key in keys[:-1]:
        cursor = cursor.setdefault(key, {})
    cursor[keys[-1]] = value
    return nested


def merged_values(
    target_file: Path | str | None = None,
    overrides: list[dict] | None = None,
) -> dict:
    """The merged raw values: base, then the target file, then each override in turn."""
    values = read_yaml(BASE_FILE) if BASE_FILE.exists() else {}
    source = [str(BASE_FILE.name)]
    if target_file is not None:
        values = deep_merge(values, read_yaml(Path(target_file)))
        source.append(str(target_file))
    for override in overrides or []:
        values = deep_merge(values, {k: v for k, v in override.items() if v is not None})
    return values


def validate(values: dict, source: str = "parameters") -> Parameters:
    """Validate merged values; raise one ParameterError that lists every problem."""
    problems: list[str] = []
    unknown = [k for k in values if k not in GROUPS]
    values = {k: v for k, v in values.items() if k in GROUPS}
    problems += [f"{k}: unknown parameter (check the spelling)" for k in unknown]
    params = None
    try:
        params = Parameters.model_validate(values)
    except ValidationError as exc:
        problems += [_format_error(e) for e in exc.errors()]
    try:
        problems += cross_check(values)
    except (AttributeError, TypeError):
        pass  # a group that is not a mapping at all is already reported above
    if problems or params is None:
        raise ParameterError(problems, source)
    return params


def load(
    target_file: Path | str | None = None,
    overrides: list[dict] | None = None,
) -> Parameters:
    """Load and validate: base, target file, overrides. Raises ParameterError listing all."""
    values = merged_values(target_file, overrides)
    return validate(values, str(target_file or BASE_FILE.name))
