"""Unit tests of the controllers' pure rules: command and env building, expansion, mounts,
template hashes, replica arithmetic and which pods a scale-down removes first."""

from __future__ import annotations

import asyncio
import concurrent.futures
import base64

import pytest

from runbook_lib.sandbox.controllers.deployment import SAFE_ALPHABET, _deletion_rank, template_hash
from runbook_lib.sandbox.controllers.spec import (
    ContainerConfigError,
    container_argv,
    expand,
    resolve_env,
    rewrite_mounts,
)
from runbook_lib.sandbox.controllers.util import int_or_percent, selector_matches
from runbook_lib.sandbox.images import ImageConfig


def _run(coro):
    """Run a coroutine on a loop of its own thread: another test may have left this thread's
    loop marked as running (papermill and nbclient run loops in-process)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def image(entrypoint=(), cmd=()):
    return ImageConfig(entrypoint=list(entrypoint), cmd=list(cmd), workdir=None, env={},
                       user=None)


def test_expand_follows_kubernetes_rules():
    env = {"A": "1", "URL": "postgres://x"}
    assert expand("$(A)-$(B)", env) == "1-$(B)"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$$", env) == "$"
    assert expand("cost $5 $(A", env) == "cost $5 $(A"
    assert expand("-s $(URL)", env) == "-s postgres://x"
    assert expand("trailing $", env) == "trailing $"


def test_command_and_args_over_entrypoint_and_cmd():
    img = image(["dbos"], ["start"])
    assert container_argv({}, img) == ["dbos", "start"]
    assert container_argv({"args": ["migrate", "-r", "role"]}, img) == ["dbos", "migrate", "-r",
                                                                        "role"]
    assert container_argv({"command": ["sh", "-c", "x"]}, img) == ["sh", "-c", "x"]
    assert container_argv({"command": ["python"], "args": ["-V"]}, img) == ["python", "-V"]
    assert container_argv({"command": ["python"]}, None) == ["python"]
    assert container_argv({}, None) is None


def test_mount_paths_are_rewritten_as_whole_prefixes():
    walkthrough = ("cp /etc/ssl/certs/ca-certificates.crt /certs/ca-certificates.crt && "
                   "cat /tls/tls.crt >> /certs/ca-certificates.crt")
    mounts = [("/tls", "/state/v/tls-cert"), ("/certs", "/state/v/ca-certs")]
    assert rewrite_mounts(walkthrough, mounts) == (
        "cp /etc/ssl/certs/ca-certificates.crt /state/v/ca-certs/ca-certificates.crt && "
        "cat /state/v/tls-cert/tls.crt >> /state/v/ca-certs/ca-certificates.crt")
    assert rewrite_mounts("/certsX /certs", mounts) == "/certsX /state/v/ca-certs"
    assert rewrite_mounts("SSL_CERT_FILE=/certs", mounts) == "SSL_CERT_FILE=/state/v/ca-certs"


def _fetcher(objects):
    async def fetch(namespace, name):
        return objects.get((namespace, name))
    return fetch


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def test_env_resolution_order_references_and_errors():
    secrets = _fetcher({("dbos", "db"): {"data": {"url": _b64("postgresql://u:pw@h:5432/d")}}})
    maps = _fetcher({("dbos", "cfg"): {"data": {"MODE": "prod", "LEVEL": "debug"}}})
    pod = {"metadata": {"name": "p-1", "namespace": "dbos", "labels": {"app": "web"}}}
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "GREETING", "value": "$(POD) in $(CFG_MODE) $(LATER) $$(POD)"},
            {"name": "LATER", "value": "late"},
        ],
    }
    env = _run(resolve_env(container, pod, secrets, maps))
    assert env["URL"] == "postgresql://u:pw@h:5432/d"
    assert env["POD"] == "p-1" and env["APP"] == "web" and env["IP"] == "127.0.0.1"
    assert env["CFG_LEVEL"] == "debug"
    assert env["GREETING"] == "p-1 in prod $(LATER) $(POD)"

    missing = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope",
                                                                     "key": "k"}}}]}
    with pytest.raises(ContainerConfigError, match='secret "nope" not found'):
        _run(resolve_env(missing, pod, secrets, maps))
    no_key = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "k"}}}]}
    with pytest.raises(ContainerConfigError, match="couldn't find key k in Secret dbos/db"):
        _run(resolve_env(no_key, pod, secrets, maps))
    optional = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {
        "name": "nope", "key": "k", "optional": True}}}]}
    assert _run(resolve_env(optional, pod, secrets, maps)) == {}


def test_template_hash_shape_and_sensitivity():
    template = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c"}]}}
    first = template_hash(template)
    assert first and set(first) <= set(SAFE_ALPHABET) and len(first) <= 10
    assert template_hash(template) == first
    labelled = {"metadata": {"labels": {"app": "a", "pod-template-hash": first}},
                "spec": template["spec"]}
    assert template_hash(labelled) == first
    assert template_hash(template, 1) != first
    changed = {"metadata": template["metadata"], "spec": {"containers": [{"name": "d"}]}}
    assert template_hash(changed) != first


def test_int_or_percent_rounding():
    assert int_or_percent("25%", 2, round_up=True) == 1
    assert int_or_percent("25%", 2, round_up=False) == 0
    assert int_or_percent("25%", 10, round_up=True) == 3
    assert int_or_percent(2, 10, round_up=False) == 2
    assert int_or_percent("3", 10, round_up=False) == 3


def test_selector_matching():
    selector = {"matchLabels": {"app": "a"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}
    assert selector_matches(selector, {"app": "a", "tier": "web"})
    assert not selector_matches(selector, {"app": "a", "tier": "db"})
    assert not selector_matches({}, {"app": "a"})


def _pod(name, node=True, phase="Running", ready=True, created="2026-01-01T00:00:00Z",
         restarts=0):
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"nodeName": "n"} if node else {},
        "status": {"phase": phase, "conditions": [
            {"type": "Ready", "status": "True" if ready else "False",
             "lastTransitionTime": created}],
            "containerStatuses": [{"restartCount": restarts}]},
    }


def test_scale_down_removes_unscheduled_then_pending_then_unready_then_newest():
    pods = [
        _pod("old-ready", created="2026-01-01T00:00:00Z"),
        _pod("new-ready", created="2026-01-02T00:00:00Z"),
        _pod("unready", ready=False),
        _pod("pending", phase="Pending", ready=False),
        _pod("unscheduled", node=False, phase="Pending", ready=False),
        _pod("crashy", created="2026-01-01T00:00:00Z", restarts=4),
    ]
    order = [p["metadata"]["name"] for p in sorted(pods, key=_deletion_rank)]
    assert order[:3] == ["unscheduled", "pending", "unready"]
    assert order.index("new-ready") < order.index("old-ready")
    assert order.index("crashy") < order.index("old-ready")
