"""Look-ups several stages share: the cluster API, the RDS endpoint, image references and the
database URLs. Each asks the target afresh, so a stage run on its own finds what earlier stages
made without reading their records.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

from runbook_lib import kube, redact
from runbook_lib.errors import TargetError
from runbook_lib.secrets_resolver import secret


@lru_cache(maxsize=8)
def _client(kubeconfig: str, stamp: float):
    return kube.api_client(kubeconfig)


def kube_api(stage):
    """An API client for the deployment's cluster (re-read when the kubeconfig changes)."""
    path = stage.target.kubeconfig
    if not path.exists():
        raise TargetError(f"no kubeconfig at {path}: run the infrastructure stage first")
    return _client(str(path), path.stat().st_mtime)


def rds_endpoint(stage) -> tuple[str, int]:
    """The RDS instance's endpoint address and port."""
    rds = stage.target.client("rds")
    ident = stage.params.database.instance_id
    try:
        instance = rds.describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]
    except rds.exceptions.DBInstanceNotFoundFault:
        raise TargetError(f"RDS instance {ident} does not exist: run the infrastructure "
                          "stage first") from None
    endpoint = instance.get("Endpoint") or {}
    if not endpoint.get("Address"):
        raise TargetError(f"RDS instance {ident} has no endpoint yet "
                          f"(status {instance.get('DBInstanceStatus')})")
    return endpoint["Address"], int(endpoint.get("Port", stage.params.database.port))


def image_ref(stage, repository: str, tag: str | None = None) -> str:
    """``<registry>/<repository>:<tag>`` from ECR (the tag defaults to the app version)."""
    ecr = stage.target.client("ecr")
    try:
        repo = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        raise TargetError(f"ECR repository {repository} does not exist: run the infrastructure "
                          "stage first") from None
    return f"{repo['repositoryUri']}:{tag or stage.params.app.version}"


def database_url(stage, user: str, password: str, database: str | None = None) -> str:
    """A PostgreSQL URL to the RDS endpoint; registered for scrubbing before it is returned."""
    host, port = rds_endpoint(stage)
    db = database or stage.params.database.name
    url = (f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{db}"
           f"?sslmode={stage.target.db_sslmode}")
    redact.register(url)
    return url


def admin_url(stage, database: str | None = None) -> str:
    params = stage.params
    return database_url(stage, params.database.master_username,
                        secret(stage.target, "postgres_password"), database)


def app_url(stage) -> str:
    return database_url(stage, stage.params.database.app_role,
                        secret(stage.target, "app_role_password"))


def conductor_key(stage) -> str | None:
    return secret(stage.target, "conductor_api_key")
