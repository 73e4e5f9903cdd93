"""Label and field selectors on lists and watches; watch events, resume, timeout and 410."""

from __future__ import annotations

import json
import threading
import time

import pytest
from kubernetes import client, watch

from .support import Target, raw_request, unique


def test_label_selectors_on_list(core: client.CoreV1Api, ns: str) -> None:
    labels = {"a": {"tier": "web", "env": "prod"}, "b": {"tier": "db", "env": "prod"},
              "c": {"tier": "web"}, "d": {}}
    for name, value in labels.items():
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": value}})

    def names(selector: str) -> set[str]:
        items = core.list_namespaced_config_map(ns, label_selector=selector).items
        return {i.metadata.name for i in items} - {"kube-root-ca.crt"}

    assert names("tier=web") == {"a", "c"}
    assert names("tier==web") == {"a", "c"}
    assert names("tier!=web") == {"b", "d"}
    assert names("tier in (web,db),env=prod") == {"a", "b"}
    assert names("tier notin (web)") == {"b", "d"}
    assert names("env") == {"a", "b"}
    assert names("!env") == {"c", "d"}
    with pytest.raises(client.ApiException) as caught:
        core.list_namespaced_config_map(ns, label_selector="tier in (web")
    assert caught.value.status == 400


def test_field_selectors_on_list(core: client.CoreV1Api, ns: str) -> None:
    for name in ("f1", "f2"):
        core.create_namespaced_config_map(ns, {"metadata": {"name": name}})
    found = core.list_namespaced_config_map(ns, field_selector="metadata.name=f1").items
    assert [i.metadata.name for i in found] == ["f1"]
    found = core.list_namespaced_config_map(ns, field_selector="metadata.name!=f1").items
    assert {i.metadata.name for i in found} == {"f2", "kube-root-ca.crt"}
    with pytest.raises(client.ApiException) as caught:
        core.list_namespaced_config_map(ns, field_selector="spec.nothing=x")
    assert caught.value.status == 400


def test_pod_field_selectors(core: client.CoreV1Api, ns: str) -> None:
    for name, node in (("placed", "conformance-ghost-node"), ("floating", None)):
        spec = {"schedulerName": "conformance-no-scheduler",
                "containers": [{"name": "c", "image": "busybox:1.36"}]}
        if node:
            spec["nodeName"] = node
        core.create_namespaced_pod(ns, {"metadata": {"name": name}, "spec": spec})
    on_node = core.list_namespaced_pod(ns, field_selector="spec.nodeName=conformance-ghost-node")
    assert [p.metadata.name for p in on_node.items] == ["placed"]
    pending = core.list_namespaced_pod(ns, field_selector="status.phase=Pending")
    assert {p.metadata.name for p in pending.items} == {"placed", "floating"}
    none_running = core.list_namespaced_pod(ns, field_selector="status.phase!=Pending")
    assert none_running.items == []


def test_selectors_across_namespaces(core: client.CoreV1Api, ns: str) -> None:
    other = unique("conf")
    core.create_namespace({"metadata": {"name": other}})
    try:
        marker = unique("mark")
        for space in (ns, other):
            core.create_namespaced_config_map(space, {"metadata": {
                "name": "shared", "labels": {"marker": marker}}})
        everywhere = core.list_config_map_for_all_namespaces(label_selector=f"marker={marker}")
        assert sorted(i.metadata.namespace for i in everywhere.items) == sorted([ns, other])
        one = core.list_config_map_for_all_namespaces(
            label_selector=f"marker={marker}", field_selector=f"metadata.namespace={other}")
        assert [i.metadata.namespace for i in one.items] == [other]
    finally:
        core.delete_namespace(other)


def test_watch_events_and_selector(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "before",
                                                        "labels": {"w": "yes"}}})

    def changes() -> None:
        time.sleep(0.3)
        core.create_namespaced_config_map(ns, {"metadata": {"name": "new",
                                                            "labels": {"w": "yes"}}})
        core.create_namespaced_config_map(ns, {"metadata": {"name": "unlabelled"}})
        core.patch_namespaced_config_map("new", ns, {"data": {"x": "1"}})
        # Leaving the selector reads as DELETED to this watch.
        core.patch_namespaced_config_map("new", ns, {"metadata": {"labels": {"w": "no"}}})
        core.delete_namespaced_config_map("before", ns)

    worker = threading.Thread(target=changes)
    worker.start()
    seen = []
    watcher = watch.Watch()
    for event in watcher.stream(core.list_namespaced_config_map, ns, label_selector="w=yes",
                                timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 5:
            watcher.stop()
    worker.join()
    assert seen == [("ADDED", "before"), ("ADDED", "new"), ("MODIFIED", "new"),
                    ("DELETED", "new"), ("DELETED", "before")]


def test_watch_from_resource_version(core: client.CoreV1Api, ns: str) -> None:
    listed = core.list_namespaced_config_map(ns)
    core.create_namespaced_config_map(ns, {"metadata": {"name": "later"}})
    events = []
    watcher = watch.Watch()
    for event in watcher.stream(core.list_namespaced_config_map, ns,
                                resource_version=listed.metadata.resource_version,
                                timeout_seconds=3):
        events.append((event["type"], event["object"].metadata.name))
        watcher.stop()
    assert events == [("ADDED", "later")]


def test_watch_field_selector_on_pods(core: client.CoreV1Api, ns: str) -> None:
    def changes() -> None:
        time.sleep(0.3)
        for name in ("w1", "w2"):
            core.create_namespaced_pod(ns, {"metadata": {"name": name}, "spec": {
                "schedulerName": "conformance-no-scheduler",
                "containers": [{"name": "c", "image": "busybox:1.36"}]}})

    worker = threading.Thread(target=changes)
    worker.start()
    names = []
    watcher = watch.Watch()
    for event in watcher.stream(core.list_namespaced_pod, ns, field_selector="metadata.name=w2",
                                timeout_seconds=5):
        names.append(event["object"].metadata.name)
        watcher.stop()
    worker.join()
    assert names == ["w2"]


def test_watch_timeout_ends_stream(core: client.CoreV1Api, ns: str) -> None:
    started = time.monotonic()
    events = list(watch.Watch().stream(core.list_namespaced_config_map, ns,
                                       label_selector="never=there", timeout_seconds=1))
    elapsed = time.monotonic() - started
    assert events == []
    assert 0.8 < elapsed < 5


def test_watch_raw_stream_format(target: Target, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "raw"}})
    status, headers, data = raw_request(
        target, "GET", f"/api/v1/namespaces/{ns}/configmaps?watch=true&timeoutSeconds=1"
                       "&fieldSelector=metadata.name%3Draw")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    assert [e["type"] for e in lines] == ["ADDED"]
    assert lines[0]["object"]["kind"] == "ConfigMap"


def test_watch_bookmarks(target: Target, ns: str) -> None:
    target.on_server(lambda: setattr(target.server, "bookmark_interval_s", 0.2))
    try:
        status, _, data = raw_request(
            target, "GET", f"/api/v1/namespaces/{ns}/configmaps?watch=1&timeoutSeconds=1"
                           "&allowWatchBookmarks=true&resourceVersion=0")
    finally:
        target.on_server(lambda: setattr(target.server, "bookmark_interval_s", 10.0))
    events = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert status == 200 and bookmarks
    assert bookmarks[0]["object"]["metadata"]["resourceVersion"]


def test_watch_too_old_is_410(target: Target, core: client.CoreV1Api, ns: str) -> None:
    cluster = target.server.cluster
    first = core.create_namespaced_config_map(ns, {"metadata": {"name": "old"}})
    target.on_server(lambda: setattr(cluster, "history_limit", 3))
    try:
        for n in range(6):
            core.patch_namespaced_config_map("old", ns, {"data": {"n": str(n)}})
        with pytest.raises(client.ApiException) as caught:
            for _ in watch.Watch().stream(core.list_namespaced_config_map, ns,
                                          resource_version=first.metadata.resource_version,
                                          timeout_seconds=2):
                pass
        assert caught.value.status == 410
    finally:
        target.on_server(lambda: setattr(cluster, "history_limit", 4000))


def test_watch_across_namespaces(core: client.CoreV1Api, ns: str) -> None:
    marker = unique("mark")

    def changes() -> None:
        time.sleep(0.3)
        core.create_namespaced_config_map(ns, {"metadata": {"name": "everywhere",
                                                            "labels": {"marker": marker}}})

    worker = threading.Thread(target=changes)
    worker.start()
    seen = []
    watcher = watch.Watch()
    for event in watcher.stream(core.list_config_map_for_all_namespaces,
                                label_selector=f"marker={marker}", timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.namespace))
        watcher.stop()
    worker.join()
    assert seen == [("ADDED", ns)]


def test_watch_ends_when_server_stops(target: Target) -> None:
    if not target.local:
        pytest.skip("stops a sandbox server")
    from runbook_lib.sandbox.kubeapi import ServerThread

    own = ServerThread()
    own.start()
    try:
        import urllib3

        response = urllib3.PoolManager().request(
            "GET", own.url + "/api/v1/configmaps?watch=true&timeoutSeconds=60",
            preload_content=False, timeout=urllib3.Timeout(connect=5, read=10))
        first = response.readline()
        assert json.loads(first)["type"] == "ADDED"
        started = time.monotonic()
        stopper = threading.Thread(target=own.stop)
        stopper.start()
        rest = response.read()
        stopper.join()
        assert time.monotonic() - started < 5
        assert all(json.loads(line)["type"] == "ADDED" for line in rest.splitlines() if line)
    finally:
        own.stop()
