"""The sandbox's Kubernetes API server: HTTP on aiohttp in front of :class:`Cluster`.

:class:`KubeAPIServer` listens on 127.0.0.1 and answers the REST API the way a kube-apiserver
does for kubectl, the official Python client and the sandbox controllers: discovery, CRUD with
the four patch types, ``/status`` and ``/scale``, watches, pod logs and the service proxy.
Controllers install three hooks on it (pod logs, a log follower and a service resolver); every
other interaction is plain HTTP, as against a real cluster.

The router parses the URL itself (one catch-all route) so that trailing slashes, the legacy
``/watch/`` prefix and proxy paths behave like upstream. All work happens on one asyncio loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Self
from urllib.parse import unquote

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from . import discovery, tables
from .cluster import APPLY, PATCH_TYPES, Cluster, Gone, Watcher, crd_resource_type
from .resources import ResourceType
from .selectors import field_name_equals, parse_field_selector, parse_label_selector
from .status import ApiError, bad_request, method_not_allowed

log = logging.getLogger("runbook_lib.sandbox.kubeapi.server")

JSON = "application/json"
_HEALTH = ("healthz", "readyz", "livez")
_HOP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                "trailers", "transfer-encoding", "upgrade", "host", "authorization",
                "content-length"}
DEFAULT_WATCH_TIMEOUT_S = 1800
BOOKMARK_INTERVAL_S = 10.0

PodLogProvider = Callable[[str, str, "str | None", bool], "str | None"]
PodLogFollower = Callable[[str, str, "str | None"], AsyncIterator[bytes]]
ServiceResolver = Callable[[str, str, "str | None"], "str | None"]


def _no_logs(namespace: str, pod: str, container: str | None, previous: bool) -> str | None:
    return ""


def _no_endpoints(namespace: str, service: str, port: str | None) -> str | None:
    return None


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class KubeAPIServer:
    """An in-memory Kubernetes API server on ``host:port`` (port 0 picks a free one).

    Hooks the sandbox controllers install:

    - ``pod_log_provider(namespace, pod, container, previous)`` returns the full log text of a
      container, or None when the container has not started (the server then answers like a
      real one for a waiting container). Default: every log is empty.
    - ``pod_log_follower(namespace, pod, container)`` yields log bytes written *after* the text
      the provider just returned, until the container stops. Without it, ``follow=true`` polls
      the provider and sends what was appended, until the pod goes away or finishes.
    - ``service_resolver(namespace, service, port)`` returns ``"http://127.0.0.1:PORT"`` of a
      ready endpoint for the service port (a name, a number or None for the only port), or
      None when there is none (the proxy then answers 503 as a real server does).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.url = ""
        self.cluster = Cluster()
        self.pod_log_provider: PodLogProvider = _no_logs
        self.pod_log_follower: PodLogFollower | None = None
        self.service_resolver: ServiceResolver = _no_endpoints
        self.bookmark_interval_s = BOOKMARK_INTERVAL_S
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._stopping: asyncio.Event | None = None  # created in start(), on the loop
        self._streams: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; ``self.url`` is then ``http://127.0.0.1:PORT``."""
        loop = asyncio.get_running_loop()
        self.cluster.attach(loop)
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=3 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.port
        self.url = f"http://{self.host}:{self.port}"
        log.info("sandbox Kubernetes API server listening on %s", self.url)

    async def stop(self) -> None:
        """Close every watch and log stream, then the listener."""
        if self._stopping is not None:
            self._stopping.set()
        self.cluster.close_watches()
        for task in list(self._streams):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- dispatch --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.cluster.warnings.clear()
        try:
            return await self._route(request)
        except ApiError as exc:
            return _status_response(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("internal error on %s %s", request.method, request.path)
            return _status_response(ApiError(500, "InternalError",
                                             "an error on the server prevented the request "
                                             "from succeeding"))

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [unquote(p) for p in request.raw_path.split("?", 1)[0].split("/") if p]
        method = request.method
        if not parts:
            return _json(discovery.root_paths(self.cluster.registry))
        head = parts[0]
        if head in _HEALTH:
            return web.Response(text="ok", content_type="text/plain")
        if head == "version" and len(parts) == 1:
            return _json(discovery.VERSION_INFO)
        if head == "openapi":
            return self._openapi(parts[1:])
        if head == "api":
            if len(parts) == 1:
                return _json(discovery.api_versions(f"{self.host}:{self.port}"))
            if parts[1] != "v1":
                raise _path_not_found()
            if len(parts) == 2:
                return _json(discovery.resource_list(self.cluster.registry, "", "v1"))
            return await self._resource(request, "", "v1", parts[2:], method)
        if head == "apis":
            registry = self.cluster.registry
            if len(parts) == 1:
                return _json(discovery.api_group_list(registry))
            group = parts[1]
            if len(parts) == 2:
                doc = discovery.api_group_doc(registry, group)
                if doc is None:
                    raise _path_not_found()
                return _json(doc)
            version = parts[2]
            if len(parts) == 3:
                doc = discovery.resource_list(registry, group, version)
                if doc is None:
                    raise _path_not_found()
                return _json(doc)
            return await self._resource(request, group, version, parts[3:], method)
        raise _path_not_found()

    def _openapi(self, rest: list[str]) -> web.Response:
        """OpenAPI v3 index and group-version documents (operations only, see discovery.py);
        no v2 document, as on a server that does not publish one."""
        registry = self.cluster.registry
        if rest == ["v3"]:
            return _json(discovery.openapi_v3_index(registry))
        if len(rest) == 3 and rest[:2] == ["v3", "api"]:
            doc = discovery.openapi_v3_document(registry, "", rest[2])
        elif len(rest) == 4 and rest[:2] == ["v3", "apis"]:
            doc = discovery.openapi_v3_document(registry, rest[2], rest[3])
        else:
            doc = None
        if doc is None:
            raise _path_not_found()
        return _json(doc)

    async def _resource(self, request: web.Request, group: str, version: str, rest: list[str],
                        method: str) -> web.StreamResponse:
        """Route ``[namespaces/NS/]PLURAL[/NAME[/SUBRESOURCE[/...]]]``."""
        query = request.query
        watch = _flag(query.get("watch"))
        if rest and rest[0] == "watch":
            watch, rest = True, rest[1:]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces" and not (
            len(rest) == 3 and rest[2] in ("status", "finalize")
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise _path_not_found()
        rt = self.cluster.registry.lookup(group, version, rest[0])
        if rt is None:
            raise _path_not_found()
        if namespace is not None and not rt.namespaced:
            raise _path_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and len(rest) > 3 and sub != "proxy":
            raise _path_not_found()

        if name is None:
            return await self._collection(request, rt, version, namespace, method, watch)
        if rt.namespaced and namespace is None:
            raise _path_not_found()
        if watch:
            if method != "GET":
                raise method_not_allowed()
            return await self._watch(request, rt, version, namespace, name_pin=name)
        if sub is None:
            return await self._item(request, rt, version, namespace, name, method)
        return await self._subresource(request, rt, version, namespace, name, sub, rest[3:],
                                       method)

    # -- collections and items -----------------------------------------------------------------

    async def _collection(self, request: web.Request, rt: ResourceType, version: str,
                          namespace: str | None, method: str, watch: bool) -> web.StreamResponse:
        query = request.query
        if method == "GET":
            if watch:
                return await self._watch(request, rt, version, namespace)
            return self._list(request, rt, version, namespace)
        if method == "POST":
            if rt.namespaced and namespace is None:
                raise method_not_allowed()
            _require_verb(rt, "create")
            body = await _read_json(request)
            obj = self.cluster.create(rt, namespace, body, manager=_manager(request),
                                      dry_run=_dry_run(query), version=version,
                                      field_validation=_field_validation(query))
            return self._written(self._render(obj, rt, version), 201)
        if method == "DELETE":
            _require_verb(rt, "deletecollection")
            options = await _delete_options(request)
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"), rt.key)
            removed = self.cluster.delete_collection(rt, namespace, labels, fields, options,
                                                     dry_run=_dry_run(query))
            return _json(self._list_body(rt, version, [self._render(o, rt, version)
                                                       for o in removed]))
        raise method_not_allowed()

    def _list(self, request: web.Request, rt: ResourceType, version: str,
              namespace: str | None) -> web.Response:
        query = request.query
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(query.get("fieldSelector"), rt.key)
        items = self.cluster.list(rt, namespace, labels, fields,
                                  name=field_name_equals(query.get("fieldSelector")))
        items, continue_token, remaining = _paginate(items, query)
        rv = self.cluster.resource_version
        accept = request.headers.get("Accept", "")
        if "as=Table" in accept:
            body = tables.table(rt, items, version, query.get("includeObject", "Metadata"), rv,
                                lambda o: self._render(o, rt, version))
            if continue_token:
                body["metadata"]["continue"] = continue_token
            return _json(body, content_type=JSON)
        if "as=PartialObjectMetadataList" in accept:
            body = {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                    "metadata": {"resourceVersion": rv},
                    "items": [tables.partial_metadata(o) for o in items]}
            return _json(body)
        meta: dict[str, Any] = {"resourceVersion": rv}
        if continue_token:
            meta["continue"] = continue_token
            meta["remainingItemCount"] = remaining
        # Built from each object's cached JSON text: no re-encoding of unchanged objects.
        head = dumps({"kind": rt.list_kind, "apiVersion": rt.api_version(version),
                      "metadata": meta})
        text = head[:-1] + ',"items":[' + ",".join(self._text(o, rt, version)
                                                     for o in items) + "]}"
        return web.Response(text=text, content_type=JSON)

    def _list_body(self, rt: ResourceType, version: str, items: list[Any]) -> dict[str, Any]:
        return {"kind": rt.list_kind, "apiVersion": rt.api_version(version),
                "metadata": {"resourceVersion": self.cluster.resource_version}, "items": items}

    async def _item(self, request: web.Request, rt: ResourceType, version: str,
                    namespace: str | None, name: str, method: str) -> web.StreamResponse:
        query = request.query
        if method == "GET":
            _require_verb(rt, "get")
            return self._single(request, rt, version, self.cluster.get(rt, namespace, name))
        if method == "PUT":
            _require_verb(rt, "update")
            body = await _read_json(request)
            obj, created = self.cluster.replace(rt, namespace, name, body,
                                                manager=_manager(request),
                                                dry_run=_dry_run(query), version=version,
                                                field_validation=_field_validation(query))
            return self._written(self._render(obj, rt, version), 201 if created else 200)
        if method == "PATCH":
            _require_verb(rt, "patch")
            obj, created = self.cluster.patch(
                rt, namespace, name, _patch_type(request), await request.read(),
                manager=_manager(request, apply=_patch_type(request) == APPLY),
                force=_force(query), dry_run=_dry_run(query), version=version,
                field_validation=_field_validation(query))
            return self._written(self._render(obj, rt, version), 201 if created else 200)
        if method == "DELETE":
            _require_verb(rt, "delete")
            options = await _delete_options(request)
            result = self.cluster.delete(rt, namespace, name, options, dry_run=_dry_run(query))
            if result.get("kind") == "Status":
                return _json(result)
            return _json(self._render(result, rt, version))
        raise method_not_allowed()

    def _written(self, body: dict[str, Any], status: int) -> web.Response:
        """A write's answer, with a ``Warning`` header per unknown field dropped."""
        response = _json(body, status=status)
        for warning in self.cluster.warnings:
            escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
            response.headers.add("Warning", f'299 - "{escaped}"')
        self.cluster.warnings.clear()
        return response

    def _single(self, request: web.Request, rt: ResourceType, version: str,
                obj: dict[str, Any]) -> web.Response:
        accept = request.headers.get("Accept", "")
        if "as=Table" in accept:
            body = tables.table(rt, [obj], version, request.query.get("includeObject",
                                                                      "Metadata"),
                                obj["metadata"].get("resourceVersion"),
                                lambda o: self._render(o, rt, version))
            return _json(body)
        if "as=PartialObjectMetadata" in accept:
            return _json(tables.partial_metadata(obj))
        return web.Response(text=self._text(obj, rt, version), content_type=JSON)

    def _text(self, obj: dict[str, Any], rt: ResourceType, version: str) -> str:
        """The object's JSON as served at ``version``."""
        if rt.crd is not None and version != rt.storage_version:
            return dumps(self._render(obj, rt, version))
        return self.cluster.encoded(rt, obj)

    def _render(self, obj: dict[str, Any], rt: ResourceType, version: str) -> dict[str, Any]:
        """The object as served at ``version`` (custom resources may be served at several)."""
        if rt.crd is not None and version != rt.storage_version:
            return {**obj, "apiVersion": rt.api_version(version)}
        return obj

    # -- subresources ----------------------------------------------------------------------------

    async def _subresource(self, request: web.Request, rt: ResourceType, version: str,
                           namespace: str | None, name: str, sub: str, tail: list[str],
                           method: str) -> web.StreamResponse:
        query = request.query
        cluster = self.cluster
        if sub == "status" and "status" in rt.subresources:
            if method == "GET":
                return _json(self._render(cluster.get(rt, namespace, name), rt, version))
            if method == "PUT":
                body = await _read_json(request)
                obj, _ = cluster.replace(rt, namespace, name, body, manager=_manager(request),
                                         subresource="status", dry_run=_dry_run(query),
                                         version=version,
                                         field_validation=_field_validation(query))
                return self._written(self._render(obj, rt, version), 200)
            if method == "PATCH":
                patch_type = _patch_type(request)
                obj, _ = cluster.patch(rt, namespace, name, patch_type, await request.read(),
                                       manager=_manager(request, apply=patch_type == APPLY),
                                       force=_force(query), subresource="status",
                                       dry_run=_dry_run(query), version=version,
                                       field_validation=_field_validation(query))
                return self._written(self._render(obj, rt, version), 200)
            raise method_not_allowed()
        if sub == "scale" and "scale" in rt.subresources:
            if method == "GET":
                return _json(cluster.get_scale(rt, namespace, name))
            if method == "PUT":
                body = await _read_json(request)
                return _json(cluster.update_scale(rt, namespace, name, body,
                                                  manager=_manager(request),
                                                  dry_run=_dry_run(query)))
            if method == "PATCH":
                return _json(cluster.patch_scale(rt, namespace, name, _patch_type(request),
                                                 await request.read(),
                                                 manager=_manager(request),
                                                 dry_run=_dry_run(query)))
            raise method_not_allowed()
        if rt.key == ("", "pods") and sub == "log":
            if method != "GET":
                raise method_not_allowed()
            return await self._pod_log(request, namespace or "", name)
        if rt.key == ("", "pods") and sub in ("binding", "eviction"):
            if method != "POST":
                raise method_not_allowed()
            body = await _read_json(request)
            return _json(self._pod_action(namespace or "", name, sub, body), status=201)
        if rt.key == ("", "services") and sub == "proxy":
            return await self._service_proxy(request, namespace or "", name)
        if rt.key == ("", "namespaces") and sub == "finalize" and method == "PUT":
            body = await _read_json(request)
            obj, _ = cluster.replace(rt, None, name, body, manager=_manager(request),
                                     dry_run=_dry_run(query), version=version)
            return _json(obj)
        raise _path_not_found()

    def _pod_action(self, namespace: str, name: str, sub: str, body: Any) -> dict[str, Any]:
        pods = self.cluster.registry.by_key("", "pods")
        assert pods is not None
        pod = self.cluster.get(pods, namespace, name)
        if sub == "eviction":
            options = (body or {}).get("deleteOptions") or {}
            self.cluster.delete(pods, namespace, name, options)
        else:
            node = ((body or {}).get("target") or {}).get("name")
            if not node:
                raise bad_request("a Binding needs target.name")
            self.cluster.bind_pod(pod, node)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}

    # -- watch -----------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, rt: ResourceType, version: str,
                     namespace: str | None, name_pin: str | None = None) -> web.StreamResponse:
        query = request.query
        _require_verb(rt, "watch")
        labels = parse_label_selector(query.get("labelSelector"))
        field_text = query.get("fieldSelector")
        if name_pin is not None:
            field_text = f"metadata.name={name_pin}" + (f",{field_text}" if field_text else "")
        fields = parse_field_selector(field_text, rt.key)
        timeout = _int(query.get("timeoutSeconds"), DEFAULT_WATCH_TIMEOUT_S)
        bookmarks = _flag(query.get("allowWatchBookmarks"))
        send_initial = _flag(query.get("sendInitialEvents"))
        table_mode = "as=Table" in request.headers.get("Accept", "")
        include = query.get("includeObject", "Metadata")

        response = web.StreamResponse(status=200, headers={
            "Content-Type": JSON, "Cache-Control": "no-cache, private"})
        response.enable_chunked_encoding()
        try:
            watcher = self.cluster.watch(rt, namespace, labels, fields,
                                         query.get("resourceVersion"), send_initial)
        except Gone as gone:
            await response.prepare(request)
            error = ApiError(410, "Expired", str(gone))
            await response.write((dumps({"type": "ERROR", "object": error.body()}) + "\n")
                                 .encode())
            await response.write_eof()
            return response

        initial_left = watcher.queue.qsize() if send_initial else -1
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, 0)
        try:
            await response.prepare(request)
            if initial_left == 0:
                await self._write_bookmark(response, rt, version, initial_end=True)
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(remaining, self.bookmark_interval_s) if bookmarks else remaining
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and deadline - loop.time() > 0:
                        await self._write_bookmark(response, rt, version)
                    continue
                if item is None:
                    break
                event_type, obj = item
                if table_mode:
                    payload = tables.table(rt, [obj], version, include,
                                           obj["metadata"].get("resourceVersion"),
                                           lambda o: self._render(o, rt, version))
                    line = dumps({"type": event_type, "object": payload})
                else:
                    line = ('{"type":"' + event_type + '","object":'
                            + self._text(obj, rt, version) + "}")
                await response.write((line + "\n").encode())
                if initial_left > 0:
                    initial_left -= 1
                    if initial_left == 0:
                        await self._write_bookmark(response, rt, version, initial_end=True)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        except Exception:  # the headers are sent: end the stream, keep the server
            log.exception("watch of %s failed", rt.plural)
        finally:
            self.cluster.unwatch(watcher)
            if task is not None:
                self._streams.discard(task)
        try:
            await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def _write_bookmark(self, response: web.StreamResponse, rt: ResourceType, version: str,
                              initial_end: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": self.cluster.resource_version}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        event = {"type": "BOOKMARK", "object": {"kind": rt.kind,
                                                "apiVersion": rt.api_version(version),
                                                "metadata": meta}}
        await response.write((dumps(event) + "\n").encode())

    # -- pod logs --------------------------------------------------------------------------------

    async def _pod_log(self, request: web.Request, namespace: str,
                       name: str) -> web.StreamResponse:
        query = request.query
        pods = self.cluster.registry.by_key("", "pods")
        assert pods is not None
        pod = self.cluster.get(pods, namespace, name)
        container = _log_container(pod, query.get("container"))
        previous = _flag(query.get("previous"))
        if not (pod.get("spec") or {}).get("nodeName"):
            # Like upstream: a pod no node runs has no log yet, and that is not an error.
            return web.Response(body=b"", content_type="text/plain", charset="utf-8")
        text = self.pod_log_provider(namespace, name, container, previous)
        if text is None:
            if previous:
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" '
                                  "not found")
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                              "ContainerCreating")
        shown = _tail(text, query.get("tailLines"))
        limit = _int(query.get("limitBytes"), 0)
        if not _flag(query.get("follow")) or previous:
            data = shown.encode()
            if limit > 0:
                data = data[:limit]
            return web.Response(body=data, content_type="text/plain", charset="utf-8")

        response = web.StreamResponse(status=200, headers={"Content-Type":
                                                           "text/plain; charset=utf-8"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._streams.add(task)
        uid = pod["metadata"]["uid"]
        try:
            if shown:
                await response.write(shown.encode())
            if self.pod_log_follower is not None:
                async for chunk in self.pod_log_follower(namespace, name, container):
                    if self._stopping is not None and self._stopping.is_set():
                        break
                    await response.write(chunk)
            else:
                await self._poll_log(response, pods, namespace, name, uid, container, text)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        except Exception:  # a failing hook ends the stream, not the server
            log.exception("following the log of pod %s/%s failed", namespace, name)
        finally:
            if task is not None:
                self._streams.discard(task)
        try:
            await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    async def _poll_log(self, response: web.StreamResponse, pods: ResourceType, namespace: str,
                        name: str, uid: str, container: str | None, sent: str) -> None:
        """Follow a log without a follower hook: poll the provider for appended text."""
        while self._stopping is None or not self._stopping.is_set():
            pod = self.cluster.find(pods, namespace, name)
            if pod is None or pod["metadata"]["uid"] != uid:
                return
            finished = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            text = self.pod_log_provider(namespace, name, container, False) or ""
            if len(text) > len(sent) and text.startswith(sent):
                await response.write(text[len(sent):].encode())
                sent = text
            elif finished:
                return
            await asyncio.sleep(0.25)

    # -- service proxy ---------------------------------------------------------------------------

    async def _service_proxy(self, request: web.Request, namespace: str,
                             target: str) -> web.StreamResponse:
        pieces = target.split(":")
        if len(pieces) == 3:
            _, service, port = pieces
        elif len(pieces) == 2:
            service, port = pieces
        else:
            service, port = pieces[0], ""
        services = self.cluster.registry.by_key("", "services")
        assert services is not None
        self.cluster.get(services, namespace, service)
        base = self.service_resolver(namespace, service, port or None)
        if not base:
            raise ApiError(503, "ServiceUnavailable",
                           f'no endpoints available for service "{service}"')
        raw = request.raw_path.split("?", 1)[0]
        marker = "/proxy"
        index = raw.find(marker, raw.find("/services/"))
        tail = unquote(raw[index + len(marker):]) if index >= 0 else "/"
        if not tail.startswith("/"):
            tail = "/" + tail
        url = base.rstrip("/") + tail
        if request.query_string:
            url += "?" + request.query_string
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=60))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = await request.read()
        try:
            async with self._session.request(request.method, url, headers=headers,
                                             data=body or None, allow_redirects=False) as upstream:
                payload = await upstream.read()
                out_headers = {k: v for k, v in upstream.headers.items()
                               if k.lower() not in _HOP_HEADERS
                               and k.lower() != "content-encoding"}
                return web.Response(status=upstream.status, body=payload, headers=out_headers)
        except (TimeoutError, ClientError, OSError) as exc:
            raise ApiError(503, "ServiceUnavailable",
                           f"error trying to reach service: {exc}") from None


# -- helpers ---------------------------------------------------------------------------------------

def _json(body: Any, status: int = 200, content_type: str = JSON) -> web.Response:
    return web.Response(text=dumps(body), status=status, content_type=content_type)


def _status_response(error: ApiError) -> web.Response:
    return web.Response(text=dumps(error.body()), status=error.code, content_type=JSON)


def _path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _int(value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"invalid integer value {value!r}") from None


def _require_verb(rt: ResourceType, verb: str) -> None:
    if verb not in rt.verbs:
        raise method_not_allowed()


def _manager(request: web.Request, apply: bool = False) -> str:
    """The field manager: the ``fieldManager`` parameter, else (not for apply) the user agent's
    first word, as a real server derives it."""
    name = request.query.get("fieldManager")
    if name:
        if len(name) > 128:
            raise ApiError(422, "Invalid", "fieldManager: Too long: may not be more than 128 "
                                           "bytes")
        return name
    if apply:
        return ""
    agent = request.headers.get("User-Agent", "")
    return (agent.split("/", 1)[0] or "unknown")[:128]


def _dry_run(query: Any) -> bool:
    values = query.getall("dryRun", [])
    for value in values:
        if value != "All":
            raise bad_request(f'Invalid dryRun value: "{value}": supported values: "All"')
    return bool(values)


def _field_validation(query: Any) -> str:
    value = query.get("fieldValidation") or "Warn"
    if value not in ("Ignore", "Warn", "Strict"):
        raise bad_request(f'fieldValidation parameter unsupported: {value!r}: supported values: '
                          '"Ignore", "Warn", "Strict"')
    return value


def _force(query: Any) -> bool | None:
    value = query.get("force")
    return None if value is None else _flag(value)


def _patch_type(request: web.Request) -> str:
    content_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if content_type not in PATCH_TYPES:
        raise ApiError(415, "UnsupportedMediaType",
                       f"the body of the request was in an unknown format - accepted media types "
                       f"include: {', '.join(PATCH_TYPES)}")
    return content_type


def yaml_error() -> type[Exception]:
    import yaml

    return yaml.YAMLError


_BODY_TYPES = ("application/json", "application/yaml")


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    content_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if content_type and content_type not in _BODY_TYPES + ("application/x-yaml", "text/yaml"):
        # Protobuf (and CBOR) bodies are not understood here; a real server that cannot decode
        # a media type answers the same 415, and clients then know to send JSON.
        raise ApiError(415, "UnsupportedMediaType",
                       "the body of the request was in an unknown format - accepted media types "
                       "include: " + ", ".join(_BODY_TYPES))
    try:
        if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
            import yaml

            return yaml.safe_load(raw)
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, yaml_error()) as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None


async def _delete_options(request: web.Request) -> dict[str, Any]:
    options: dict[str, Any] = {}
    raw = await request.read()
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise bad_request(f"couldn't decode DeleteOptions: {exc}") from None
        if isinstance(body, dict):
            options.update(body)
    query = request.query
    if "propagationPolicy" in query:
        options["propagationPolicy"] = query["propagationPolicy"]
    if "gracePeriodSeconds" in query:
        options["gracePeriodSeconds"] = _int(query["gracePeriodSeconds"], 0)
    if "orphanDependents" in query:
        options["orphanDependents"] = _flag(query["orphanDependents"])
    return options


def _paginate(items: list[Any], query: Any) -> tuple[list[Any], str | None, int]:
    """``limit`` / ``continue``: the token names the last (namespace, name) served."""
    start = 0
    token = query.get("continue")
    if token:
        try:
            last = json.loads(base64.urlsafe_b64decode(token.encode()))
        except ValueError:
            raise ApiError(410, "Expired", "the provided continue parameter is too old to "
                                           "display a consistent list result") from None
        keys = [((o["metadata"].get("namespace") or ""), o["metadata"]["name"]) for o in items]
        start = next((n for n, k in enumerate(keys) if list(k) > last), len(items))
    limit = _int(query.get("limit"), 0)
    if limit <= 0 or start + limit >= len(items):
        return items[start:], None, 0
    page = items[start:start + limit]
    last_meta = page[-1]["metadata"]
    token = base64.urlsafe_b64encode(
        json.dumps([last_meta.get("namespace") or "", last_meta["name"]]).encode()).decode()
    return page, token, len(items) - start - limit


def _log_container(pod: dict[str, Any], wanted: str | None) -> str | None:
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    init_names = [c.get("name") for c in spec.get("initContainers") or []]
    name = pod["metadata"]["name"]
    if wanted:
        if wanted not in names + init_names:
            raise bad_request(f"container {wanted} is not valid for pod {name}")
        return wanted
    if len(names) == 1:
        return names[0]
    message = (f"a container name must be specified for pod {name}, choose one of: "
               f"[{' '.join(n for n in names if n)}]")
    if init_names:
        message += f" or one of the init containers: [{' '.join(init_names)}]"
    raise bad_request(message)


def _tail(text: str, tail_lines: str | None) -> str:
    count = _int(tail_lines, -1)
    if count < 0:
        return text
    if count == 0:
        return ""
    lines = text.splitlines(keepends=True)
    return "".join(lines[-count:])


__all__ = ["KubeAPIServer", "Watcher", "crd_resource_type"]
