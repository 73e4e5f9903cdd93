"""The run's secret values, resolved from their sources once per process.

Stage code asks for a secret by its parameter name (``postgres_password``, ``app_role_password``,
``conductor_api_key``); the value comes from the source the parameters name, is registered for
scrubbing, and is never returned to a notebook cell for display.
"""

from __future__ import annotations

from runbook_lib import secret_sources
from runbook_lib.parameters import NOTEBOOKS_DIR, RECORDS_DIR

SECRET_KEYS = ("postgres_password", "app_role_password", "conductor_api_key")


def store_for(target) -> secret_sources.SecretStore:
    return secret_sources.SecretStore(target.state_dir / "generated-secrets.json")


def secret(target, key: str) -> str | None:
    """The value of secret parameter ``key`` on ``target`` (None when its source says none)."""
    if key not in SECRET_KEYS:
        raise KeyError(key)
    source = getattr(target.params.secrets, key)
    return secret_sources.resolve(
        source,
        key=key,
        store=store_for(target),
        aws_session=target.aws_session,
        endpoint_url=target.aws_endpoint_url,
        forbidden_dirs=[RECORDS_DIR, NOTEBOOKS_DIR],
    )


def check_all(target) -> list[str]:
    """Problems resolving any secret source (messages name sources, never values)."""
    from runbook_lib.errors import ParameterError

    problems = []
    for key in SECRET_KEYS:
        try:
            secret(target, key)
        except ParameterError as exc:
            problems += exc.problems
    return problems
