"""Where secret values come from: secret parameters name a source, never a value.

A source is one or more alternatives separated by ``|``, tried in order:

- ``env:NAME`` — an environment variable of the process that runs the stage;
- ``file:PATH`` — a file outside the record (its content, trailing newline removed);
- ``arn:aws:secretsmanager:…`` — an AWS Secrets Manager secret (``#key`` picks a JSON field);
- ``generate`` — a new random value, stored (mode 0600, outside the record) so that later
  stages and re-runs get the same value;
- ``none`` — no value (for optional secrets such as the Conductor key).

Resolved values are registered with :mod:`runbook_lib.redact` at once, so nothing downstream
can print them by accident.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from pathlib import Path

from runbook_lib import redact
from runbook_lib.errors import ParameterError

log = logging.getLogger("runbook_lib.secret_sources")

_ENV = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")
_FILE = re.compile(r"^file:(.+)$")
_ARN = re.compile(
    r"^arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+(#[A-Za-z0-9_.-]+)?$"
)
_FINAL = ("generate", "none")


def alternatives(source: str) -> list[str]:
    return [part.strip() for part in source.split("|")]


def check_source(source: str) -> None:
    """Raise ValueError when ``source`` is not a valid secret source (never echoing a value)."""
    parts = alternatives(source)
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part in _FINAL:
            if not last:
                raise ValueError(f"'{part}' can only be the last alternative of a secret source")
            continue
        if _ENV.match(part) or _FILE.match(part) or _ARN.match(part):
            continue
        # Do not echo what was given: a value pasted here by mistake must not reach a log.
        raise ValueError(
            "not a secret source: use env:NAME, file:PATH, an AWS Secrets Manager ARN, "
            "'generate' or 'none' (alternatives separated by '|'); secret values are never "
            "parameters"
        )


class SecretStore:
    """Generated values, kept in a 0600 JSON file outside the record."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    def get_or_create(self, key: str) -> str:
        values = self._read()
        if key not in values:
            values[key] = secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(values, handle)
            log.info("generated a new value for %s (stored outside the record)", key)
        return values[key]


def _from_file(path_text: str, forbidden: list[Path]) -> str | None:
    path = Path(os.path.expanduser(path_text)).resolve()
    for root in forbidden:
        if root.resolve() in path.parents:
            raise ParameterError([f"secret file {path_text} lies inside {root}: keep secret "
                                  "files outside records and notebooks"])
    try:
        return path.read_text().rstrip("\n")
    except FileNotFoundError:
        return None


def _from_secrets_manager(arn: str, session, endpoint_url: str | None) -> str | None:
    arn, _, field = arn.partition("#")
    client = session.client("secretsmanager", endpoint_url=endpoint_url)
    try:
        secret = client.get_secret_value(SecretId=arn)["SecretString"]
    except client.exceptions.ResourceNotFoundException:
        return None
    if field:
        return json.loads(secret).get(field)
    return secret


def resolve(
    source: str,
    *,
    key: str,
    store: SecretStore,
    aws_session=None,
    endpoint_url: str | None = None,
    forbidden_dirs: list[Path] | None = None,
) -> str | None:
    """The value of ``source`` (None for ``none``); ParameterError when nothing provides it."""
    tried = []
    for part in alternatives(source):
        value = None
        if part == "none":
            return None
        if part == "generate":
            value = store.get_or_create(key)
        elif match := _ENV.match(part):
            value = os.environ.get(match.group(1)) or None
            tried.append(f"environment variable {match.group(1)} is not set")
        elif match := _FILE.match(part):
            value = _from_file(match.group(1), forbidden_dirs or [])
            tried.append(f"file {match.group(1)} does not exist")
        elif _ARN.match(part):
            if aws_session is None:
                raise ParameterError([f"{key}: an AWS session is needed to read {part}"])
            value = _from_secrets_manager(part, aws_session, endpoint_url)
            tried.append(f"Secrets Manager secret {part.partition('#')[0]} was not found")
        if value is not None:
            redact.register(value)
            return value
    raise ParameterError([f"secrets.{key}: no value: " + "; ".join(tried)])
