"""The sample app's configuration, read from the environment only.

``main.py`` calls :func:`load_settings` before anything heavy is imported, so a
misconfigured pod fails in a fraction of a second with one clear line instead of a
traceback. Nothing here imports DBOS: :func:`check_conductor_support` only asks whether
the proprietary ``dbos-enterprise`` package is importable.

No message built here ever contains the database URL or the Conductor key.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

APP_NAME = "dbos-app"

# The only dbos-enterprise release that exists today; dbos and dbos-enterprise must match.
ENTERPRISE_VERSION_AVAILABLE = "3.3.0"


class ConfigError(Exception):
    """The environment does not describe a runnable app; the message says what to fix."""


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment. Secrets are kept out of ``repr``."""

    database_url: str = field(repr=False)
    executor_id: str | None = None
    app_version: str | None = None
    conductor_url: str | None = None
    conductor_key: str | None = field(default=None, repr=False)
    queue_name: str = "taskQueue"
    worker_concurrency: int = 2
    port: int = 8080
    drain_timeout_s: float = 20.0
    max_sleep_s: float = 3600.0

    def dbos_config(self) -> dict:
        """The DBOSConfig for this process: migrations off, INFO logging, our IDs."""
        config: dict = {
            "name": APP_NAME,
            "system_database_url": self.database_url,
            # The app runs as the restricted role; the migration Job owns the schema.
            "run_migrations": False,
            # DEBUG would log the Conductor websocket URL, which carries the key.
            "log_level": "INFO",
        }
        if self.executor_id:
            config["executor_id"] = self.executor_id
        if self.app_version:
            config["application_version"] = self.app_version
        if self.conductor_key:
            config["conductor_key"] = self.conductor_key
        if self.conductor_url:
            config["conductor_url"] = self.conductor_url
        return config


def _text(env: Mapping[str, str], name: str) -> str | None:
    """An optional variable; empty counts as unset, as Kubernetes renders a missing value."""
    value = env.get(name, "").strip()
    return value or None


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, low: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < low:
        raise ConfigError(f"{name} must be a finite number of seconds >= {low:g}, got {raw!r}")
    return value


def load_settings(env: Mapping[str, str]) -> Settings:
    """Read and validate the app's variables; raise ConfigError naming the one at fault."""
    database_url = _text(env, "DBOS_SYSTEM_DATABASE_URL")
    if database_url is None:
        # Without it DBOS would silently fall back to SQLite inside the container.
        raise ConfigError(
            "DBOS_SYSTEM_DATABASE_URL is not set: it must hold the PostgreSQL URL of the "
            "DBOS system database (the app never falls back to SQLite)"
        )
    if not database_url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        # Say only the scheme: the rest of the value may hold a password.
        scheme = database_url.split(":", 1)[0] if ":" in database_url else "none"
        raise ConfigError(
            f"DBOS_SYSTEM_DATABASE_URL must be a postgresql:// URL (scheme given: {scheme!r})"
        )

    queue_name = _text(env, "QUEUE_NAME") or "taskQueue"
    if queue_name.startswith("_dbos_"):
        raise ConfigError("QUEUE_NAME may not start with '_dbos_' (reserved by DBOS)")

    return Settings(
        database_url=database_url,
        executor_id=_text(env, "DBOS__VMID"),
        app_version=_text(env, "DBOS__APPVERSION"),
        conductor_url=_text(env, "DBOS_CONDUCTOR_URL"),
        conductor_key=_text(env, "DBOS_CONDUCTOR_KEY"),
        queue_name=queue_name,
        worker_concurrency=_integer(env, "WORKER_CONCURRENCY", 2, 1, 1000),
        port=_integer(env, "PORT", 8080, 1, 65535),
        drain_timeout_s=_seconds(env, "DRAIN_TIMEOUT_SECONDS", 20.0, 0.0),
        max_sleep_s=_seconds(env, "MAX_SLEEP_SECONDS", 3600.0, 0.0),
    )


def check_conductor_support(settings: Settings) -> None:
    """Refuse a Conductor key this image cannot use, before DBOS fails on it mid-start.

    Conductor needs the proprietary ``dbos-enterprise`` package at exactly the dbos
    version; only 3.3.0 exists while this app pins dbos 3.4.0.
    """
    if settings.conductor_key is None:
        return
    dbos_version = importlib.metadata.version("dbos")
    if importlib.util.find_spec("dbos_enterprise") is None:
        raise ConfigError(
            "DBOS_CONDUCTOR_KEY is set but the dbos-enterprise package is not installed: "
            f"Conductor needs dbos[enterprise] at the same version as dbos ({dbos_version}), "
            f"and only dbos-enterprise {ENTERPRISE_VERSION_AVAILABLE} exists, so pin "
            f"dbos[enterprise]=={ENTERPRISE_VERSION_AVAILABLE} to use Conductor, "
            "or unset DBOS_CONDUCTOR_KEY"
        )
    enterprise_version = importlib.metadata.version("dbos-enterprise")
    if enterprise_version != dbos_version:
        raise ConfigError(
            f"DBOS_CONDUCTOR_KEY is set but dbos-enterprise {enterprise_version} does not "
            f"match dbos {dbos_version}: install both at the same version"
        )
