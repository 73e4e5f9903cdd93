"""The state and the rules of the sandbox cluster: objects, versions, deletion and collection.

:class:`Cluster` holds every object in memory, indexed by (resource, namespace, name), and
implements what a kube-apiserver and its built-in controllers do with them, independent of
HTTP: server-set metadata, one global resourceVersion counter, generation bumps on spec
changes, optimistic concurrency, the status split, finalizers and ``deletionTimestamp``,
graceful pod deletion, namespace termination, garbage collection by owner UID (background,
foreground, orphan), CRDs that register and unregister their custom resources, and the event
history that watches replay from. ``server.py`` turns HTTP requests into calls of these methods;
nothing else should need it.

Every stored object is replaced, never changed in place, once published: watch queues and the
history hold references to them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from . import defaults, fieldcheck, managed_fields, schema, validation
from .patching import clone, json_patch, merge_patch, strategic_merge
from .resources import Registry, ResourceType
from .selectors import FieldRequirement, Requirement, fields_match, labels_match
from .status import (
    ApiError,
    already_exists,
    bad_request,
    not_found,
    qualified,
    stale,
    success,
    unsupported_media_type,
)

log = logging.getLogger("runbook_lib.sandbox.kubeapi.cluster")

HISTORY_PER_RESOURCE = 4000
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE, STRATEGIC, APPLY)

Obj = dict[str, Any]


def now_rfc3339(offset_s: float = 0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Gone(Exception):
    """A watch asked for a resourceVersion older than the kept history."""

    def __init__(self, requested: int, oldest: int):
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class Watcher:
    """One open watch: a filter and a queue of (type, object) events."""

    def __init__(self, rt: ResourceType, namespace: str | None, labels: list[Requirement],
                 fields: list[FieldRequirement]):
        self.rt = rt
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.queue: asyncio.Queue[tuple[str, Obj] | None] = asyncio.Queue()

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        return labels_match(self.labels, meta.get("labels")) and fields_match(self.fields, obj)

    def offer(self, event_type: str, obj: Obj, old: Obj | None) -> None:
        now_in = self.matches(obj)
        before = self.matches(old)
        if event_type == "ADDED":
            if now_in:
                self.queue.put_nowait(("ADDED", obj))
        elif event_type == "MODIFIED":
            if now_in and before:
                self.queue.put_nowait(("MODIFIED", obj))
            elif now_in:
                self.queue.put_nowait(("ADDED", obj))
            elif before:
                self.queue.put_nowait(("DELETED", obj))
        elif event_type == "DELETED" and (now_in or before):
            self.queue.put_nowait(("DELETED", obj))

    def close(self) -> None:
        self.queue.put_nowait(None)


class Cluster:
    """All objects of the sandbox cluster and the rules that govern them."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.allocator = defaults.Allocator()
        self._rv = 100
        self._objects: dict[tuple[str, str], dict[str, dict[str, Obj]]] = {}
        self._by_uid: dict[str, tuple[tuple[str, str], str, str]] = {}
        self._dependents: dict[str, set[str]] = {}
        self._history: dict[tuple[str, str], deque[tuple[int, str, Obj, Obj | None]]] = {}
        self._compacted: dict[tuple[str, str], int] = {}
        self._watchers: dict[tuple[str, str], set[Watcher]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Watch events kept per resource for resuming; older versions answer 410 Gone.
        self.history_limit = HISTORY_PER_RESOURCE
        # Warnings of the current request (unknown fields under fieldValidation=Warn); the
        # HTTP layer empties the list before each request and sends what it holds.
        self.warnings: list[str] = []
        # The JSON text of stored objects, made once per version of an object: lists, gets
        # and watch events of unchanged objects reuse it.
        self._json: dict[tuple[tuple[str, str], str, str], tuple[Obj, str]] = {}
        self._bootstrap()

    # -- plumbing --------------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run deferred work (garbage collection, namespace cleanup) on ``loop``."""
        self._loop = loop

    def _defer(self, callback: Callable[[], None], delay: float = 0.0) -> None:
        def guarded() -> None:
            try:
                callback()
            except ApiError as exc:
                log.debug("deferred cluster work refused: %s", exc.message)
            except Exception:  # a bug here must not kill the event loop
                log.exception("deferred cluster work failed")

        if self._loop is None or self._loop.is_closed():
            guarded()
        elif delay:
            self._loop.call_later(delay, guarded)
        else:
            self._loop.call_soon(guarded)

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _bootstrap(self) -> None:
        ns_type = self.registry.by_key("", "namespaces")
        for name in SYSTEM_NAMESPACES:
            self.create(ns_type, None, {"metadata": {"name": name}}, manager="kube-apiserver")
        svc_type = self.registry.by_key("", "services")
        self.create(svc_type, "default", {
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver",
                                                          "provider": "kubernetes"}},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}],
                     "clusterIP": "10.96.0.1"},
        }, manager="kube-apiserver")

    # -- reading ---------------------------------------------------------------------------------

    def find(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        return self._objects.get(rt.key, {}).get(namespace or "", {}).get(name)

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.find(rt, namespace, name)
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return obj

    def list(self, rt: ResourceType, namespace: str | None, labels: list[Requirement],
             fields: list[FieldRequirement], name: str | None = None) -> list[Obj]:
        """Matching objects sorted by namespace and name; ``name`` is a fast path for a
        ``metadata.name=`` field selector."""
        buckets = self._objects.get(rt.key, {})
        if namespace:
            spaces = [buckets.get(namespace, {})]
        else:
            spaces = [buckets[ns] for ns in sorted(buckets)]
        out: list[Obj] = []
        for space in spaces:
            names = [name] if name is not None else sorted(space)
            for item_name in names:
                obj = space.get(item_name)
                if obj is None:
                    continue
                meta = obj.get("metadata") or {}
                if labels and not labels_match(labels, meta.get("labels")):
                    continue
                if fields and not fields_match(fields, obj):
                    continue
                out.append(obj)
        return out

    def encoded(self, rt: ResourceType, obj: Obj) -> str:
        """``obj`` as compact JSON, cached while it is the stored version."""
        meta = obj["metadata"]
        where = (rt.key, meta.get("namespace", "") if rt.namespaced else "", meta["name"])
        hit = self._json.get(where)
        if hit is not None and hit[0] is obj:
            return hit[1]
        text = json.dumps(obj, separators=(",", ":"))
        if self.find(rt, where[1] or None, where[2]) is obj:
            self._json[where] = (obj, text)
        return text

    def by_uid(self, uid: str) -> Obj | None:
        where = self._by_uid.get(uid)
        if where is None:
            return None
        key, namespace, name = where
        return self._objects.get(key, {}).get(namespace, {}).get(name)

    # -- watching --------------------------------------------------------------------------------

    def watch(self, rt: ResourceType, namespace: str | None, labels: list[Requirement],
              fields: list[FieldRequirement], resource_version: str | None,
              send_initial: bool = False) -> Watcher:
        """Open a watch. With no resourceVersion (or "0", or ``send_initial``) the current
        objects come first as ADDED; otherwise the history after that version is replayed.
        Raises :class:`Gone` when that version is older than the kept history."""
        watcher = Watcher(rt, namespace, labels, fields)
        if not resource_version or resource_version == "0" or send_initial:
            for obj in self.list(rt, namespace, labels, fields):
                watcher.queue.put_nowait(("ADDED", obj))
        else:
            try:
                since = int(resource_version)
            except ValueError:
                raise bad_request(f"invalid resource version: {resource_version!r}") from None
            oldest = self._compacted.get(rt.key, 0)
            if since < oldest:
                raise Gone(since, oldest)
            for rv, event_type, obj, old in self._history.get(rt.key, ()):
                if rv > since:
                    watcher.offer(event_type, obj, old)
        self._watchers.setdefault(rt.key, set()).add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.get(watcher.rt.key, set()).discard(watcher)

    def close_watches(self, key: tuple[str, str] | None = None) -> None:
        for watch_key, watchers in list(self._watchers.items()):
            if key is None or watch_key == key:
                for watcher in list(watchers):
                    watcher.close()
                watchers.clear()

    def _publish(self, rt: ResourceType, event_type: str, obj: Obj, old: Obj | None) -> None:
        history = self._history.setdefault(rt.key, deque())
        while history and len(history) >= self.history_limit:
            self._compacted[rt.key] = history.popleft()[0]
        history.append((int(obj["metadata"]["resourceVersion"]), event_type, obj, old))
        for watcher in list(self._watchers.get(rt.key, ())):
            watcher.offer(event_type, obj, old)

    # -- storing ---------------------------------------------------------------------------------

    def _store(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace", "") if rt.namespaced else ""
        self._objects.setdefault(rt.key, {}).setdefault(namespace, {})[meta["name"]] = obj
        uid = meta["uid"]
        self._by_uid[uid] = (rt.key, namespace, meta["name"])
        self._index_owners(uid, old, obj)
        self._publish(rt, "ADDED" if old is None else "MODIFIED", obj, old)

    def _index_owners(self, uid: str, old: Obj | None, new: Obj | None) -> None:
        def owners(obj: Obj | None) -> set[str]:
            refs = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
            return {r.get("uid") for r in refs if isinstance(r, dict) and r.get("uid")}

        before, after = owners(old), owners(new)
        for owner in before - after:
            self._dependents.get(owner, set()).discard(uid)
        for owner in after - before:
            self._dependents.setdefault(owner, set()).add(uid)

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        """Remove ``obj`` for good; returns its final state (with the deletion's version)."""
        final = dict(obj)
        final["metadata"] = dict(obj["metadata"])
        final["metadata"]["resourceVersion"] = self._next_rv()
        meta = final["metadata"]
        namespace = meta.get("namespace", "") if rt.namespaced else ""
        space = self._objects.get(rt.key, {}).get(namespace, {})
        space.pop(meta["name"], None)
        self._json.pop((rt.key, namespace, meta["name"]), None)
        if not space:
            self._objects.get(rt.key, {}).pop(namespace, None)
        uid = meta["uid"]
        self._by_uid.pop(uid, None)
        self._index_owners(uid, obj, None)
        self._publish(rt, "DELETED", final, None)

        # What a removal sets in motion: the built-in controllers' part.
        if self._dependents.get(uid):
            self._defer(lambda: self._collect_dependents(uid))
        else:
            self._dependents.pop(uid, None)
        for ref in meta.get("ownerReferences") or []:
            owner_uid = ref.get("uid") if isinstance(ref, dict) else None
            if owner_uid:
                self._defer(lambda u=owner_uid: self._finish_foreground(u))
        if namespace:
            ns_obj = self.find(self.registry.by_key("", "namespaces"), None, namespace)
            if ns_obj and ns_obj["metadata"].get("deletionTimestamp"):
                self._defer(lambda: self._finish_namespace(namespace))
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._unregister_crd(final)
        return final

    # -- shared write steps --------------------------------------------------------------------

    def _check_body(self, rt: ResourceType, body: Any, version: str | None) -> Obj:
        if not isinstance(body, dict):
            raise bad_request(f"the body of the request is not a {rt.kind} object")
        api_version = rt.api_version(version)
        sent_version, sent_kind = body.get("apiVersion"), body.get("kind")
        if sent_kind and sent_kind != rt.kind:
            raise bad_request(
                f"the API version in the data ({sent_version}) does not match the expected API "
                f"version ({api_version})" if sent_version and sent_version != api_version else
                f"{sent_kind} in version \"{version or rt.storage_version}\" cannot be handled "
                f"as a {rt.kind}: no kind \"{sent_kind}\" is registered for version "
                f"\"{api_version}\""
            )
        if sent_version and sent_version != api_version and not (
            rt.crd and sent_version.split("/")[0] == rt.group
            and sent_version.split("/")[-1] in rt.versions
        ):
            raise bad_request(
                f"the API version in the data ({sent_version}) does not match the expected API "
                f"version ({api_version})"
            )
        meta = body.get("metadata")
        if meta is None:
            body["metadata"] = {}
        elif not isinstance(meta, dict):
            raise bad_request(f"{rt.kind} in version \"{rt.storage_version}\" cannot be handled "
                              f"as a {rt.kind}: metadata must be an object")
        body["apiVersion"] = rt.api_version()
        body["kind"] = rt.kind
        return body

    def _check_namespace(self, rt: ResourceType, body: Obj, namespace: str | None) -> None:
        meta = body["metadata"]
        if rt.namespaced:
            sent = meta.get("namespace")
            if sent and sent != namespace:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)

    def _drop_unknown(self, rt: ResourceType, obj: Obj, field_validation: str | None,
                      version: str | None) -> None:
        """Unknown fields: refused under Strict, else dropped (with a warning under Warn).
        ``None`` is for the server's own writes, which need no check."""
        if field_validation is None:
            return
        found = fieldcheck.unknown_fields(rt, obj, prune=field_validation != "Strict")
        if not found:
            return
        if field_validation == "Strict":
            raise bad_request(
                f'{rt.kind} in version "{version or rt.storage_version}" cannot be handled as a '
                f"{rt.kind}: strict decoding error: "
                + ", ".join(f'unknown field "{path}"' for path in found))
        if field_validation == "Warn":
            self.warnings += [f'unknown field "{path}"' for path in found]

    def _require_namespace(self, rt: ResourceType, namespace: str | None, name: str) -> None:
        if not rt.namespaced:
            return
        ns_obj = self.find(self.registry.by_key("", "namespaces"), None, namespace or "")
        if ns_obj is None:
            raise not_found("namespaces", "", namespace or "")
        if ns_obj["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403, "Forbidden",
                f'{qualified(rt.plural, rt.group)} "{name}" is forbidden: unable to create new '
                f"content in namespace {namespace} because it is being terminated",
                name=name, group=rt.group, kind=rt.plural,
                causes=[{"reason": "NamespaceTerminating",
                         "message": f"namespace {namespace} is being terminated",
                         "field": "metadata.namespace"}],
            )

    def _prepare(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """Defaults, schema handling and the server-maintained parts of special kinds."""
        if rt.key == ("", "secrets"):
            validation.check_secret_data(obj)
        if rt.crd is not None:
            schema.apply_schema(rt, obj)
        else:
            defaults.apply_defaults(rt.key, obj, self.allocator, creating=old is None)
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            _set_crd_status(obj)
        if rt.key == ("", "services") and old is not None:
            # A real server keeps allocated values a client did not send.
            old_spec, spec = old.get("spec") or {}, obj.get("spec") or {}
            for fld in ("clusterIP", "clusterIPs"):
                if old_spec.get(fld) and not spec.get(fld):
                    spec[fld] = clone(old_spec[fld])

    def _bump_generation(self, rt: ResourceType, old: Obj, new: Obj) -> None:
        if not rt.generation:
            return
        generation = old["metadata"].get("generation", 1)
        if rt.crd is not None:
            ignore = {"metadata", "status"} if "status" in rt.subresources else {"metadata"}
            changed = any(old.get(k) != new.get(k)
                          for k in set(old) | set(new) if k not in ignore)
        else:
            changed = old.get("spec") != new.get("spec")
        new["metadata"]["generation"] = generation + 1 if changed else generation

    # -- create ----------------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str | None, body: Any, *, manager: str,
               dry_run: bool = False, version: str | None = None, managed: bool = True,
               field_validation: str | None = None) -> Obj:
        """Create an object (POST). ``managed=False`` keeps managedFields the caller set."""
        obj = self._check_body(rt, body, version)
        self._drop_unknown(rt, obj, field_validation, version)
        self._check_namespace(rt, obj, namespace)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(rt, namespace, meta["generateName"])
        name = meta.get("name") or ""
        self._require_namespace(rt, namespace, name)

        # Server-set metadata; a client cannot choose these.
        for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                    "selfLink", "generation"):
            meta.pop(key, None)
        if managed:
            meta.pop("managedFields", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if rt.generation:
            meta["generation"] = 1
        if "status" in rt.subresources and rt.key not in (("", "nodes"),):
            obj.pop("status", None)
        self._prepare(rt, obj, None)
        validation.validate(rt, obj)

        existing = self.find(rt, namespace, name)
        if existing is not None:
            error = already_exists(rt.plural, rt.group, name)
            if existing["metadata"].get("deletionTimestamp"):
                error.message = "object is being deleted: " + error.message
            raise error
        if managed:
            managed_fields.record_update(None, obj, manager, rt.api_version(version),
                                         rt.crd is None, None, meta["creationTimestamp"])
        if dry_run:
            return obj
        meta["resourceVersion"] = self._next_rv()
        self._store(rt, obj, None)
        self._after_create(rt, obj)
        return obj

    def _generate_name(self, rt: ResourceType, namespace: str | None, prefix: str) -> str:
        for _ in range(20):
            suffix = "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))
            candidate = prefix[: 63 - 5] + suffix if rt.name_rule != "subdomain" else (
                prefix + suffix)
            if self.find(rt, namespace, candidate) is None:
                return candidate
        raise ApiError(500, "AlreadyExists", "could not generate a unique name")

    def _after_create(self, rt: ResourceType, obj: Obj) -> None:
        if rt.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._register_crd(obj)
        elif rt.key == ("", "namespaces"):
            # What the service-account and root-CA publisher controllers add to a namespace.
            name = obj["metadata"]["name"]
            sa_type = self.registry.by_key("", "serviceaccounts")
            if self.find(sa_type, name, "default") is None:
                self.create(sa_type, name, {"metadata": {"name": "default"}},
                            manager="kube-controller-manager")
            cm_type = self.registry.by_key("", "configmaps")
            if self.find(cm_type, name, "kube-root-ca.crt") is None:
                self.create(cm_type, name, {
                    "metadata": {"name": "kube-root-ca.crt", "annotations": {
                        "kubernetes.io/description": "Contains a CA bundle that can be used to "
                        "verify the kube-apiserver when using internal endpoints such as the "
                        "internal service IP or kubernetes.default.svc. No other usage is "
                        "guaranteed across distributions of Kubernetes clusters."}},
                    "data": {"ca.crt": _SANDBOX_CA},
                }, manager="kube-controller-manager")
        if obj["metadata"].get("ownerReferences"):
            uid = obj["metadata"]["uid"]
            self._defer(lambda: self._collect_if_orphaned(uid), delay=1.0)

    # -- update ----------------------------------------------------------------------------------

    def replace(self, rt: ResourceType, namespace: str | None, name: str, body: Any, *,
                manager: str, subresource: str | None = None, dry_run: bool = False,
                version: str | None = None,
                field_validation: str | None = None) -> tuple[Obj, bool]:
        """Replace an object (PUT). Returns (object, created)."""
        obj = self._check_body(rt, body, version)
        self._drop_unknown(rt, obj, field_validation, version)
        if obj["metadata"].get("name") != name:
            raise bad_request(f"the name of the object ({obj['metadata'].get('name', '')}) does "
                              f"not match the name on the URL ({name})")
        self._check_namespace(rt, obj, namespace)
        old = self.find(rt, namespace, name)
        if old is None:
            if rt.key in _CREATE_ON_UPDATE and subresource is None:
                return self.create(rt, namespace, obj, manager=manager, dry_run=dry_run,
                                   version=version), True
            raise not_found(rt.plural, rt.group, name)
        return self._update(rt, old, obj, manager=manager, subresource=subresource,
                            dry_run=dry_run, version=version), False

    def patch(self, rt: ResourceType, namespace: str | None, name: str, patch_type: str,
              raw: bytes, *, manager: str | None, force: bool | None,
              subresource: str | None = None, dry_run: bool = False,
              version: str | None = None,
              field_validation: str | None = None) -> tuple[Obj, bool]:
        """Patch an object. Returns (object, created); only apply patches create."""
        if patch_type == APPLY:
            return self._apply(rt, namespace, name, raw, manager=manager, force=bool(force),
                               subresource=subresource, dry_run=dry_run, version=version,
                               field_validation=field_validation)
        if force is not None:
            raise validation_error_patch_options("force", "Forbidden: may not be specified for "
                                                 "non-apply patch")
        if patch_type == STRATEGIC and rt.crd is not None:
            raise unsupported_media_type([JSON_PATCH, MERGE, APPLY])
        old = self.get(rt, namespace, name)
        patch = _decode_json(raw)
        # The patch functions never change their input; the result is copied once, below.
        current = old
        if patch_type == JSON_PATCH:
            patched = json_patch(current, patch)
        elif patch_type == MERGE:
            if not isinstance(patch, dict):
                raise bad_request("merge patch must be a JSON object")
            patched = merge_patch(current, patch)
        else:
            patched = strategic_merge(current, patch, builtin=rt.crd is None)
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not a JSON object")
        patched = clone(patched)
        patched_name = (patched.get("metadata") or {}).get("name")
        if patched_name != name:
            raise bad_request(f"the name of the object ({patched_name}) does not match the name "
                              f"on the URL ({name})")
        obj = self._check_body(rt, patched, version)
        self._drop_unknown(rt, obj, field_validation, version)
        return self._update(rt, old, obj, manager=manager or "unknown",
                            subresource=subresource, dry_run=dry_run, version=version), False

    def _apply(self, rt: ResourceType, namespace: str | None, name: str, raw: bytes, *,
               manager: str | None, force: bool, subresource: str | None, dry_run: bool,
               version: str | None, field_validation: str | None) -> tuple[Obj, bool]:
        if not manager:
            raise validation_error_patch_options("fieldManager",
                                                 "Required value: is required for apply patch")
        applied = _decode_yaml(raw)
        if not isinstance(applied, dict):
            raise bad_request("the body of an apply patch must be an object")
        if not applied.get("kind"):
            raise bad_request(f"Object 'Kind' is missing in '{raw[:200].decode(errors='replace')}'")
        if not applied.get("apiVersion"):
            raise bad_request("Object 'apiVersion' is missing")
        applied_meta = applied.get("metadata")
        if not isinstance(applied_meta, dict) or applied_meta.get("name") != name:
            sent = applied_meta.get("name") if isinstance(applied_meta, dict) else None
            raise bad_request(f"the name of the object ({sent or ''}) does not match the name "
                              f"on the URL ({name})")
        if rt.namespaced and applied_meta.get("namespace") not in (None, namespace):
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")
        self._check_body(rt, clone(applied), version)
        self._drop_unknown(rt, applied, field_validation, version)
        now = now_rfc3339()
        old = self.find(rt, namespace, name)
        merged = managed_fields.apply(
            clone(old) if old else None, applied, manager, force,
            rt.api_version(version), rt.crd is None, rt.key, now, subresource=subresource,
        )
        merged = self._check_body(rt, merged, version)
        if old is None:
            if subresource is not None:
                raise not_found(rt.plural, rt.group, name)
            self._check_namespace(rt, merged, namespace)
            return self.create(rt, namespace, merged, manager=manager, dry_run=dry_run,
                               version=version, managed=False), True
        return self._update(rt, old, merged, manager=manager, subresource=subresource,
                            dry_run=dry_run, version=version, record=False), False

    def _update(self, rt: ResourceType, old: Obj, new: Obj, *, manager: str,
                subresource: str | None, dry_run: bool, version: str | None,
                record: bool = True) -> Obj:
        old_meta = old["metadata"]
        sent_rv = new["metadata"].get("resourceVersion")
        if sent_rv and sent_rv != old_meta["resourceVersion"]:
            raise stale(rt.plural, rt.group, old_meta["name"])

        # What this write may change: status only through /status, the rest only through the
        # main resource.
        if subresource == "status":
            result = clone(old)
            if "status" in new:
                result["status"] = clone(new["status"])
            else:
                result.pop("status", None)
            if not record:
                result["metadata"]["managedFields"] = new["metadata"].get("managedFields", [])
        else:
            result = new
            if "status" in rt.subresources:
                if "status" in old:
                    result["status"] = clone(old["status"])
                else:
                    result.pop("status", None)
            meta = result["metadata"]
            for key in ("uid", "creationTimestamp", "generation", "deletionTimestamp",
                        "deletionGracePeriodSeconds", "namespace"):
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
        # A client may rewrite managedFields (kubectl does when it moves an object from
        # client-side to server-side apply); "[{}]" clears them.
        sent_fields = result["metadata"].get("managedFields")
        base = None
        if record and sent_fields is not None and sent_fields != old_meta.get("managedFields"):
            base = [e for e in sent_fields if isinstance(e, dict) and e]
        result["metadata"]["resourceVersion"] = old_meta["resourceVersion"]

        self._prepare(rt, result, old)
        validation.validate_update(rt, old, result)
        if old_meta.get("deletionTimestamp"):
            added = set(result["metadata"].get("finalizers") or []) - set(
                old_meta.get("finalizers") or [])
            if added:
                raise validation.invalid_finalizers(rt, old_meta["name"], sorted(added))
        self._bump_generation(rt, old, result)
        if record:
            managed_fields.record_update(old, result, manager, rt.api_version(version),
                                         rt.crd is None, subresource, now_rfc3339(), base)

        if result == old:
            return old
        if dry_run:
            return result
        meta = result["metadata"]
        if (meta.get("deletionTimestamp") and not meta.get("finalizers")
                and not meta.get("deletionGracePeriodSeconds")):
            return self._remove(rt, result)
        meta["resourceVersion"] = self._next_rv()
        self._store(rt, result, old)
        self._after_update(rt, old, result)
        return result

    def _after_update(self, rt: ResourceType, old: Obj, new: Obj) -> None:
        crds = ("apiextensions.k8s.io", "customresourcedefinitions")
        if rt.key == crds and old.get("spec") != new.get("spec"):
            self._register_crd(new)
        if new["metadata"].get("ownerReferences") != old["metadata"].get("ownerReferences"):
            uid = new["metadata"]["uid"]
            self._defer(lambda: self._collect_if_orphaned(uid), delay=1.0)

    def update_internal(self, rt: ResourceType, obj: Obj, change: Callable[[Obj], None],
                        manager: str) -> Obj:
        """Change a stored object as a built-in controller would (copy, change, write)."""
        new = clone(obj)
        change(new)
        new["metadata"].pop("resourceVersion", None)
        return self._update(rt, obj, new, manager=manager, subresource=None, dry_run=False,
                            version=None)

    # -- delete ----------------------------------------------------------------------------------

    def delete(self, rt: ResourceType, namespace: str | None, name: str,
               options: dict[str, Any] | None = None, *, dry_run: bool = False) -> Obj:
        """Delete (DELETE). Returns the object still being deleted, the removed object (for
        kinds that return it) or a success Status."""
        options = options or {}
        obj = self.get(rt, namespace, name)
        meta = obj["metadata"]
        _check_preconditions(rt, obj, options.get("preconditions"))
        policy = _propagation(options, rt)
        grace = options.get("gracePeriodSeconds")

        if rt.key == ("", "namespaces"):
            return self._delete_namespace(obj, dry_run)
        if dry_run:
            return obj if rt.return_deleted or meta.get("finalizers") else success(
                name, rt.group, rt.plural, meta.get("uid"))

        has_dependents = bool(self._dependents.get(meta["uid"]))
        wanted = []
        if policy == "Orphan" and has_dependents:
            wanted.append("orphan")
        elif policy == "Foreground" and has_dependents:
            wanted.append("foregroundDeletion")

        # A second delete of an object already on its way out.
        if meta.get("deletionTimestamp"):
            return self._delete_again(rt, obj, grace, wanted)

        grace_s = self._pod_grace(rt, obj, grace)
        if grace_s or meta.get("finalizers") or wanted:
            def mark(new: Obj) -> None:
                new_meta = new["metadata"]
                new_meta["deletionTimestamp"] = now_rfc3339(grace_s or 0)
                new_meta["deletionGracePeriodSeconds"] = grace_s or 0
                finalizers = list(new_meta.get("finalizers") or [])
                finalizers += [f for f in wanted if f not in finalizers]
                if finalizers:
                    new_meta["finalizers"] = finalizers
                if rt.generation:
                    new_meta["generation"] = new_meta.get("generation", 1) + 1

            marked = self._write_deletion_marks(rt, obj, mark)
            self._defer(lambda: self._run_gc_finalizers(rt, marked["metadata"]["uid"]))
            return marked
        final = self._remove(rt, obj)
        if rt.return_deleted:
            return final
        return success(name, rt.group, rt.plural, meta.get("uid"))

    def _pod_grace(self, rt: ResourceType, obj: Obj, grace: Any) -> int:
        """The grace period of a pod deletion (0 for other kinds, unscheduled or finished
        pods)."""
        if rt.key != ("", "pods"):
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        try:
            grace = int(grace)
        except (TypeError, ValueError):
            raise bad_request("gracePeriodSeconds must be an integer") from None
        return max(grace, 0) if grace >= 0 else 1

    def _write_deletion_marks(self, rt: ResourceType, obj: Obj,
                              change: Callable[[Obj], None]) -> Obj:
        """Write a server-side change (deletion marks, a binding) past the update rules."""
        new = clone(obj)
        change(new)
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._store(rt, new, obj)
        return new

    def _delete_again(self, rt: ResourceType, obj: Obj, grace: Any, wanted: list[str]) -> Obj:
        meta = obj["metadata"]
        current = meta.get("deletionGracePeriodSeconds") or 0
        shorter = None
        if grace is not None and rt.key == ("", "pods"):
            try:
                shorter = max(int(grace), 0)
            except (TypeError, ValueError):
                raise bad_request("gracePeriodSeconds must be an integer") from None
            if shorter >= current:
                shorter = None
        missing = [f for f in wanted if f not in (meta.get("finalizers") or [])]
        if shorter is None and not missing:
            return obj
        if shorter == 0 and not meta.get("finalizers") and not missing:
            return self._remove(rt, obj)

        def change(new: Obj) -> None:
            if shorter is not None:
                new["metadata"]["deletionGracePeriodSeconds"] = shorter
                new["metadata"]["deletionTimestamp"] = now_rfc3339(shorter)
            if missing:
                new["metadata"]["finalizers"] = list(meta.get("finalizers") or []) + missing

        marked = self._write_deletion_marks(rt, obj, change)
        self._defer(lambda: self._run_gc_finalizers(rt, marked["metadata"]["uid"]))
        return marked

    def delete_collection(self, rt: ResourceType, namespace: str | None,
                          labels: list[Requirement], fields: list[FieldRequirement],
                          options: dict[str, Any] | None, *, dry_run: bool) -> list[Obj]:
        removed = []
        for obj in self.list(rt, namespace, labels, fields):
            meta = obj["metadata"]
            try:
                self.delete(rt, meta.get("namespace"), meta["name"], options, dry_run=dry_run)
            except ApiError as exc:
                if exc.code != 404:
                    raise
            removed.append(obj)
        return removed

    # -- the garbage collector's part ----------------------------------------------------------

    def _run_gc_finalizers(self, rt: ResourceType, uid: str) -> None:
        """Act on the garbage-collector finalizers of an object being deleted."""
        obj = self.by_uid(uid)
        if obj is None:
            return
        finalizers = obj["metadata"].get("finalizers") or []
        if "orphan" in finalizers:
            for dependent_uid in list(self._dependents.get(uid, ())):
                self._drop_owner_ref(dependent_uid, uid)
            self._drop_finalizer(uid, "orphan")
        elif "foregroundDeletion" in finalizers:
            for dependent_uid in list(self._dependents.get(uid, ())):
                dependent = self.by_uid(dependent_uid)
                if dependent is None:
                    continue
                drt, dns, dname = self._locate(dependent_uid)
                try:
                    self.delete(drt, dns or None, dname, {"propagationPolicy": "Foreground"})
                except ApiError:
                    pass
            self._finish_foreground(uid)

    def _finish_foreground(self, owner_uid: str) -> None:
        owner = self.by_uid(owner_uid)
        if owner is None or "foregroundDeletion" not in (owner["metadata"].get("finalizers") or []):
            return
        if any(self.by_uid(d) is not None for d in self._dependents.get(owner_uid, ())):
            return
        self._drop_finalizer(owner_uid, "foregroundDeletion")

    def _drop_finalizer(self, uid: str, finalizer: str) -> None:
        obj = self.by_uid(uid)
        if obj is None:
            return
        rt = self._locate(uid)[0]

        def change(new: Obj) -> None:
            new["metadata"]["finalizers"] = [
                f for f in new["metadata"].get("finalizers") or [] if f != finalizer]
            if not new["metadata"]["finalizers"]:
                del new["metadata"]["finalizers"]

        self.update_internal(rt, obj, change, "generic-garbage-collector")

    def _drop_owner_ref(self, dependent_uid: str, owner_uid: str) -> None:
        dependent = self.by_uid(dependent_uid)
        if dependent is None:
            return
        rt = self._locate(dependent_uid)[0]

        def change(new: Obj) -> None:
            refs = [r for r in new["metadata"].get("ownerReferences") or []
                    if r.get("uid") != owner_uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)

        self.update_internal(rt, dependent, change, "generic-garbage-collector")

    def _collect_dependents(self, owner_uid: str) -> None:
        """After an owner is gone: dependents with no other live owner are deleted (in the
        background), the others lose the reference."""
        for dependent_uid in list(self._dependents.get(owner_uid, ())):
            dependent = self.by_uid(dependent_uid)
            if dependent is None:
                continue
            refs = dependent["metadata"].get("ownerReferences") or []
            alive = [r for r in refs if r.get("uid") != owner_uid and self.by_uid(r.get("uid"))]
            if alive:
                self._drop_owner_ref(dependent_uid, owner_uid)
                continue
            drt, dns, dname = self._locate(dependent_uid)
            try:
                self.delete(drt, dns or None, dname, {"propagationPolicy": "Background"})
            except ApiError:
                pass
        if not any(self.by_uid(d) for d in self._dependents.get(owner_uid, ())):
            self._dependents.pop(owner_uid, None)

    def _collect_if_orphaned(self, uid: str) -> None:
        """A dependent all of whose owners are absent is garbage, as for the real collector."""
        obj = self.by_uid(uid)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        refs = obj["metadata"].get("ownerReferences") or []
        if refs and not any(self.by_uid(r.get("uid", "")) for r in refs):
            rt, namespace, name = self._locate(uid)
            log.debug("collecting %s %s/%s: its owners are gone", rt.kind, namespace, name)
            self.delete(rt, namespace or None, name, {"propagationPolicy": "Background"})

    def _locate(self, uid: str) -> tuple[ResourceType, str, str]:
        key, namespace, name = self._by_uid[uid]
        rt = self.registry.by_key(*key)
        assert rt is not None
        return rt, namespace, name

    # -- namespaces ------------------------------------------------------------------------------

    def _delete_namespace(self, obj: Obj, dry_run: bool) -> Obj:
        name = obj["metadata"]["name"]
        if name in ("default", "kube-system", "kube-public"):
            raise ApiError(403, "Forbidden",
                           f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                           name=name, kind="namespaces")
        if obj["metadata"].get("deletionTimestamp") or dry_run:
            return obj

        def mark(new: Obj) -> None:
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new.setdefault("status", {})["phase"] = "Terminating"

        marked = self._write_deletion_marks(self.registry.by_key("", "namespaces"), obj, mark)
        self._defer(lambda: self._empty_namespace(name))
        return marked

    def _empty_namespace(self, namespace: str) -> None:
        """The namespace controller: delete everything in a terminating namespace."""
        for key in list(self._objects):
            rt = self.registry.by_key(*key)
            if rt is None or not rt.namespaced:
                continue
            for name in list(self._objects.get(key, {}).get(namespace, {})):
                try:
                    self.delete(rt, namespace, name, {"propagationPolicy": "Background"})
                except ApiError:
                    pass
        self._finish_namespace(namespace)

    def _finish_namespace(self, namespace: str) -> None:
        ns_type = self.registry.by_key("", "namespaces")
        ns_obj = self.find(ns_type, None, namespace)
        if ns_obj is None or not ns_obj["metadata"].get("deletionTimestamp"):
            return
        if any(space.get(namespace) for space in self._objects.values()):
            return
        self._remove(ns_type, ns_obj)

    # -- custom resource definitions -----------------------------------------------------------

    def _register_crd(self, crd: Obj) -> None:
        rt = crd_resource_type(crd)
        previous = self.registry.by_key(rt.group, rt.plural)
        self.registry.add(rt)
        if previous is None:
            log.debug("registered custom resource %s.%s", rt.plural, rt.group)

    def _unregister_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
        rt = self.registry.by_key(group, plural)
        if rt is None or rt.crd is None:
            return
        # Deleting a CRD deletes its objects: their watchers see DELETED, then the end.
        for namespace in list(self._objects.get(rt.key, {})):
            for obj in list(self._objects.get(rt.key, {}).get(namespace, {}).values()):
                self._remove(rt, obj)
        self.registry.remove(group, plural)
        self.close_watches(rt.key)
        self._objects.pop(rt.key, None)
        self._json = {k: v for k, v in self._json.items() if k[0] != rt.key}
        self._history.pop(rt.key, None)
        self._compacted.pop(rt.key, None)

    # -- subresources --------------------------------------------------------------------------

    def bind_pod(self, pod: Obj, node: str) -> Obj:
        """The ``pods/binding`` subresource: set ``spec.nodeName`` once, as the scheduler
        does (a plain update of nodeName is refused like on a real server)."""
        name = pod["metadata"]["name"]
        if (pod.get("spec") or {}).get("nodeName"):
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} '
                           f'is already assigned to node "{pod["spec"]["nodeName"]}"',
                           name=name, kind="pods/binding")
        rt = self.registry.by_key("", "pods")
        assert rt is not None

        def bind(new: Obj) -> None:
            new["spec"]["nodeName"] = node

        return self._write_deletion_marks(rt, pod, bind)

    def get_scale(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        return to_scale(rt, self.get(rt, namespace, name))

    def update_scale(self, rt: ResourceType, namespace: str | None, name: str, scale: Any, *,
                     manager: str, dry_run: bool) -> Obj:
        old = self.get(rt, namespace, name)
        if not isinstance(scale, dict):
            raise bad_request("the body of the request is not a Scale object")
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise validation.invalid_scale(name, replicas)
        sent_rv = (scale.get("metadata") or {}).get("resourceVersion")
        new = clone(old)
        if sent_rv:
            new["metadata"]["resourceVersion"] = sent_rv
        set_path(new, rt.scale_paths.get("spec", ".spec.replicas"), replicas)
        updated = self._update(rt, old, new, manager=manager, subresource=None, dry_run=dry_run,
                               version=None)
        return to_scale(rt, updated)

    def patch_scale(self, rt: ResourceType, namespace: str | None, name: str, patch_type: str,
                    raw: bytes, *, manager: str, dry_run: bool) -> Obj:
        current = self.get_scale(rt, namespace, name)
        if patch_type == APPLY:
            patched = merge_patch(current, _decode_yaml(raw))
        elif patch_type == JSON_PATCH:
            patched = json_patch(current, _decode_json(raw))
        elif patch_type == MERGE:
            patched = merge_patch(current, _decode_json(raw))
        else:
            patched = strategic_merge(current, _decode_json(raw))
        return self.update_scale(rt, namespace, name, patched, manager=manager, dry_run=dry_run)


_CREATE_ON_UPDATE = {
    ("", "endpoints"), ("", "events"), ("coordination.k8s.io", "leases"),
    ("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
}

_SANDBOX_CA = "-----BEGIN CERTIFICATE-----\nsandbox\n-----END CERTIFICATE-----\n"


def validation_error_patch_options(field: str, message: str) -> ApiError:
    return ApiError(
        422, "Invalid", f'PatchOptions.meta.k8s.io "" is invalid: {field}: {message}',
        group="meta.k8s.io", kind="PatchOptions", name="",
        causes=[{"reason": "FieldValueRequired" if "Required" in message else
                 "FieldValueForbidden", "message": message, "field": field}],
    )


def _check_preconditions(rt: ResourceType, obj: Obj, preconditions: Any) -> None:
    if not isinstance(preconditions, dict):
        return
    meta = obj["metadata"]
    name = meta["name"]
    uid, rv = preconditions.get("uid"), preconditions.get("resourceVersion")
    if uid and uid != meta.get("uid"):
        raise ApiError(409, "Conflict",
                       f'Operation cannot be fulfilled on {qualified(rt.plural, rt.group)} '
                       f'"{name}": Precondition failed: UID in precondition: {uid}, UID in '
                       f"object meta: {meta.get('uid')}", name=name, group=rt.group,
                       kind=rt.plural)
    if rv and rv != meta.get("resourceVersion"):
        raise ApiError(409, "Conflict",
                       f'Operation cannot be fulfilled on {qualified(rt.plural, rt.group)} '
                       f'"{name}": Precondition failed: ResourceVersion in precondition: {rv}, '
                       f"ResourceVersion in object meta: {meta.get('resourceVersion')}",
                       name=name, group=rt.group, kind=rt.plural)


def _propagation(options: dict[str, Any], rt: ResourceType) -> str:
    policy = options.get("propagationPolicy")
    if policy is None and options.get("orphanDependents") is not None:
        policy = "Orphan" if options["orphanDependents"] else "Background"
    if policy is None:
        return rt.default_propagation
    if policy not in ("Background", "Foreground", "Orphan"):
        raise ApiError(422, "Invalid",
                       f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported '
                       f'value: "{policy}": supported values: "Foreground", "Background", '
                       '"Orphan", "nil"')
    return policy


def _decode_json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"error decoding patch: {exc}") from None


def _decode_yaml(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        pass
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(raw, Loader=loader)
    except yaml.YAMLError as exc:
        raise bad_request(f"error decoding YAML: {exc}") from None


def _set_crd_status(crd: Obj) -> None:
    """What the apiextensions controllers report for an accepted, established CRD."""
    spec = crd.get("spec") or {}
    names = clone(spec.get("names") or {})
    storage = [v.get("name") for v in spec.get("versions") or [] if v.get("storage")]
    status = crd.setdefault("status", {})
    stored = list(status.get("storedVersions") or [])
    for version in storage:
        if version not in stored:
            stored.append(version)
    now = now_rfc3339()
    previous = {c.get("type"): c for c in status.get("conditions") or []}

    def condition(kind: str, reason: str, message: str) -> Obj:
        old = previous.get(kind)
        if old and old.get("status") == "True":
            return old
        return {"type": kind, "status": "True", "lastTransitionTime": now, "reason": reason,
                "message": message}

    status["conditions"] = [
        condition("NamesAccepted", "NoConflicts", "no conflicts found"),
        condition("Established", "InitialNamesAccepted", "the initial names have been accepted"),
    ]
    status["acceptedNames"] = names
    status["storedVersions"] = stored


def crd_resource_type(crd: Obj) -> ResourceType:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
    storage = [v for v in versions if v.get("storage")] or versions[:1]
    ordered = storage + [v for v in versions if v not in storage]
    subresources = (storage[0].get("subresources") or {}) if storage else {}
    scale = subresources.get("scale") or {}
    return ResourceType(
        group=spec.get("group", ""),
        versions=tuple(v["name"] for v in ordered),
        plural=names.get("plural", ""),
        singular=names.get("singular") or names.get("kind", "").lower(),
        kind=names.get("kind", ""),
        namespaced=spec.get("scope") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        subresources=frozenset(k for k in ("status", "scale") if k in subresources),
        generation=True,
        crd=crd,
        scale_paths={"spec": scale.get("specReplicasPath", ".spec.replicas"),
                     "status": scale.get("statusReplicasPath", ".status.replicas"),
                     "selector": scale.get("labelSelectorPath", "")} if scale else {},
    )


def get_path(obj: Any, path: str) -> Any:
    node = obj
    for part in [p for p in path.split(".") if p]:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def set_path(obj: Obj, path: str, value: Any) -> None:
    parts = [p for p in path.split(".") if p]
    node = obj
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def to_scale(rt: ResourceType, obj: Obj) -> Obj:
    """The autoscaling/v1 Scale view of a workload."""
    meta = obj["metadata"]
    if rt.crd is not None:
        spec_replicas = get_path(obj, rt.scale_paths.get("spec", ".spec.replicas"))
        status_replicas = get_path(obj, rt.scale_paths.get("status", ".status.replicas"))
        selector = get_path(obj, rt.scale_paths["selector"]) if rt.scale_paths.get(
            "selector") else None
    else:
        spec_replicas = (obj.get("spec") or {}).get("replicas")
        status_replicas = (obj.get("status") or {}).get("replicas")
        selector = selector_string((obj.get("spec") or {}).get("selector"))
    scale: Obj = {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                          "creationTimestamp") if k in meta},
        "spec": {"replicas": spec_replicas or 0} if spec_replicas else {},
        "status": {"replicas": status_replicas or 0},
    }
    if selector:
        scale["status"]["selector"] = selector
    return scale


def selector_string(selector: Any) -> str:
    """A LabelSelector in the string form (``a=b,c in (d)``)."""
    if not isinstance(selector, dict):
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key = expr.get("operator"), expr.get("key")
        values = ",".join(sorted(expr.get("values") or []))
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)

