"""RDS instances that are real databases: moto's RDS API backed by embedded PostgreSQL.

moto answers the RDS API but serves no database behind an instance. In the sandbox daemon, moto
runs in-process, and this module hooks its RDS backend so that:

- ``CreateDBInstance`` (engine ``postgres``) starts a fresh PostgreSQL server whose superuser
  is the instance's ``MasterUsername`` with its ``MasterUserPassword`` (and creates ``DBName``
  when given), and registers the instance's endpoint (``<id>.….rds.amazonaws.com:5432``) in the
  sandbox :class:`~runbook_lib.sandbox.network.Network` as that server's local address;
- ``ModifyDBInstance`` with a new ``MasterUserPassword`` changes the password, and with a new
  identifier moves the endpoint;
- ``DeleteDBInstance`` stops the server and removes its data.

All of this happens inside the API call, before moto answers: a pod started right after
``create_db_instance`` returns can connect. If the server cannot start, the call fails and moto
forgets the instance. Other engines stay API-only, as moto has them.

The hook is installed before moto's RDS code is imported (moto imports a service's code on its
first request), so the daemon does not pay that import at start. Passwords pass through here
and into :class:`~runbook_lib.sandbox.postgres.EmbeddedPostgres`; they are never logged.

Known limits: instances restored from snapshots, read replicas and clusters get no server;
``POST /moto-api/reset`` forgets instances without stopping their servers (they stop with the
daemon); the master user is a real superuser, where RDS gives ``rds_superuser``.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runbook_lib.sandbox.network import Network
from runbook_lib.sandbox.postgres import (
    EmbeddedPostgres,
    PostgresError,
    ProxyLoop,
    TlsFrontend,
    self_signed_context,
    usable_base,
)

log = logging.getLogger("runbook_lib.sandbox.rds")

MOTO_RDS_MODULE = "moto.rds.models"
SERVED_ENGINES = ("postgres",)


@dataclass
class _Instance:
    identifier: str
    endpoint: tuple[str, int]
    server: EmbeddedPostgres
    frontend: TlsFrontend

    @property
    def local(self) -> tuple[str, int]:
        return (self.frontend.host, self.frontend.port)


class RdsStandIn:
    """Keeps one embedded PostgreSQL server per moto RDS instance."""

    def __init__(
        self,
        base_dir: Path,
        network: Network,
        on_change: Callable[[], None] | None = None,
    ):
        self.requested_base = Path(base_dir)
        self.network = network
        self.on_change = on_change
        self._base: Path | None = None
        self._instances: dict[tuple[str, str, str], _Instance] = {}
        self._lock = threading.RLock()
        self._loop: ProxyLoop | None = None
        self._installed = False

    # -- the hook ---------------------------------------------------------------------------

    def install(self) -> None:
        """Hook moto's RDS backend now, or as soon as moto imports it."""
        if self._installed:
            return
        self._installed = True
        module = sys.modules.get(MOTO_RDS_MODULE)
        if module is not None:
            self._patch(module)
        else:
            sys.meta_path.insert(0, _AfterImport(MOTO_RDS_MODULE, self._patch))

    def _patch(self, module) -> None:
        backend_cls = module.RDSBackend
        client_error = module.RDSClientError
        standin = self
        original_create = backend_cls.create_db_instance
        original_modify = backend_cls.modify_db_instance
        original_delete = backend_cls.delete_db_instance

        def create_db_instance(backend, db_kwargs):
            database = original_create(backend, db_kwargs)
            try:
                standin._on_create(backend, database, db_kwargs)
            except Exception as exc:
                backend.databases.pop(database.db_instance_identifier, None)
                log.exception("no PostgreSQL for %s", database.db_instance_identifier)
                raise client_error(
                    "InternalFailure",
                    f"sandbox: could not start PostgreSQL for {database.db_instance_identifier}: "
                    f"{type(exc).__name__}",
                ) from None
            return database

        def modify_db_instance(backend, db_instance_identifier, db_kwargs):
            password = db_kwargs.get("master_user_password")
            database = original_modify(backend, db_instance_identifier, db_kwargs)
            standin._on_modify(backend, db_instance_identifier, database, password)
            return database

        def delete_db_instance(backend, db_instance_identifier, *args, **kwargs):
            database = original_delete(backend, db_instance_identifier, *args, **kwargs)
            standin._on_delete(backend, db_instance_identifier)
            return database

        backend_cls.create_db_instance = create_db_instance
        backend_cls.modify_db_instance = modify_db_instance
        backend_cls.delete_db_instance = delete_db_instance
        log.debug("moto RDS backend hooked")

    # -- what the hooks do ------------------------------------------------------------------

    def _on_create(self, backend, database, db_kwargs) -> None:
        engine = (database.engine or "").lower()
        identifier = database.db_instance_identifier
        if engine not in SERVED_ENGINES:
            log.warning("RDS %s has engine %s: API only, no database server", identifier, engine)
            return
        password = _master_password(database, db_kwargs)
        if not password:
            raise PostgresError("the instance has no master password")
        key = (backend.account_id, backend.region_name, identifier)
        endpoint = (database.address, int(database.port))
        started = time.monotonic()
        with self._lock:
            root = self._base_dir() / f"{backend.region_name}-{identifier}"
            server = EmbeddedPostgres(root, database.master_username, label=identifier)
            server.start(password, database.db_name)
            try:
                context = self_signed_context(endpoint[0], root / "tls")
                frontend = TlsFrontend(self._proxy_loop(), (server.host, server.port), context)
                frontend.start()
            except BaseException:
                server.remove()
                raise
            instance = _Instance(identifier, endpoint, server, frontend)
            self._instances[key] = instance
            self.network.add(endpoint[0], endpoint[1], *instance.local)
        log.info(
            "RDS %s: endpoint %s:%d is served by embedded PostgreSQL at %s:%d (ready in %.1f s)",
            identifier,
            *endpoint,
            *instance.local,
            time.monotonic() - started,
        )
        self._changed()

    def _on_modify(self, backend, old_identifier, database, password) -> None:
        key = (backend.account_id, backend.region_name, old_identifier)
        with self._lock:
            instance = self._instances.get(key)
            if instance is None:
                return
            if password:
                instance.server.set_password(password)
                log.info("RDS %s: master password changed", old_identifier)
            new_identifier = database.db_instance_identifier
            if new_identifier != old_identifier:
                # A renamed instance gets a new endpoint name, as on RDS.
                self._instances.pop(key)
                self.network.remove(*instance.endpoint)
                instance.identifier = new_identifier
                instance.endpoint = (database.address, int(database.port))
                self._instances[(key[0], key[1], new_identifier)] = instance
                self.network.add(*instance.endpoint, *instance.local)
                log.info("RDS %s is now %s", old_identifier, new_identifier)
        self._changed()

    def _on_delete(self, backend, identifier) -> None:
        key = (backend.account_id, backend.region_name, identifier)
        with self._lock:
            instance = self._instances.pop(key, None)
            if instance is None:
                return
            self.network.remove(*instance.endpoint)
            instance.frontend.stop()
            instance.server.remove()
        log.info("RDS %s: PostgreSQL stopped and its data removed", identifier)
        self._changed()

    # -- for the daemon ---------------------------------------------------------------------

    def instances(self) -> dict[str, dict[str, str]]:
        """``{instance id: {"endpoint": "host:port", "local": "127.0.0.1:port", …}}``."""
        with self._lock:
            return {
                inst.identifier: {
                    "endpoint": f"{inst.endpoint[0]}:{inst.endpoint[1]}",
                    "local": f"{inst.local[0]}:{inst.local[1]}",
                    "server_port": str(inst.server.port),
                    "server_pid": str(inst.server.pid),
                    "region": key[1],
                }
                for key, inst in self._instances.items()
            }

    def shutdown(self) -> None:
        """Stop every server and remove all their data."""
        with self._lock:
            instances = list(self._instances.values())
            self._instances.clear()
            for instance in instances:
                self.network.remove(*instance.endpoint)
                try:
                    instance.frontend.stop()
                except Exception:
                    log.exception("frontend of %s did not stop cleanly", instance.identifier)
                instance.server.remove()
            if self._loop is not None:
                self._loop.close()
                self._loop = None
            if self._base is not None:
                shutil.rmtree(self._base, ignore_errors=True)
                self._base = None
        if instances:
            log.info("stopped %d PostgreSQL server(s)", len(instances))

    def _base_dir(self) -> Path:
        if self._base is None:
            self._base = usable_base(self.requested_base)
        return self._base

    def _proxy_loop(self) -> ProxyLoop:
        if self._loop is None:
            self._loop = ProxyLoop()
        return self._loop

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                log.exception("could not record the RDS change")


def _master_password(database, db_kwargs) -> str | None:
    password = db_kwargs.get("master_user_password")
    if password:
        return password
    # With ManageMasterUserPassword, moto keeps the password in its Secrets Manager.
    secret = getattr(database, "master_user_secret", None)
    if secret is not None:
        try:
            return json.loads(secret.secret.secret_string)["password"]
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
    return None


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``callback(module)`` right after ``name`` is first imported, under its import lock
    (so no other thread sees the module before the callback has run)."""

    def __init__(self, name: str, callback: Callable):
        self.name = name
        self.callback = callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _CallbackLoader(spec.loader, self.callback)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    def __init__(self, inner, callback: Callable):
        self.inner = inner
        self.callback = callback

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        self.inner.exec_module(module)
        self.callback(module)
