"""The controller tests' harness: a sandbox cluster (our API server and the controller manager
on one event loop in a background thread, with a SandboxContext over a temporary directory),
the official Kubernetes client and kubectl pointed at it, the small programs pods run, and
helpers to wait and to look for leftover processes."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from pathlib import Path

import kubernetes

from runbook_lib.sandbox.context import SandboxContext
from runbook_lib.sandbox.controllers import ControllerManager
from runbook_lib.sandbox.images import ImageResolver, bin_path
from runbook_lib.sandbox.kubeapi import KubeAPIServer, write_kubeconfig
from runbook_lib.sandbox.network import Network

# Small programs the pods run. Each prints its pid first, so tests can check it is gone.
HTTP_SERVER = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if self.path.startswith('/fail') else 200
        body = (os.environ.get('HOSTNAME', '') + ' ' + self.path).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print('pid', os.getpid(), 'port', os.environ['PORT'], flush=True)
http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
"""

SLOW_TO_STOP = """
import os, signal, time
def on_term(*_):
    print('got SIGTERM', flush=True)
    time.sleep(60)
signal.signal(signal.SIGTERM, on_term)
print('pid', os.getpid(), flush=True)
while True:
    time.sleep(0.05)
"""


class Sandbox:
    """The API server and controller manager on a private event loop."""

    def __init__(self, root: Path, **manager_options):
        self.root = root
        self.manager_options = {"resync_s": 2.0, **manager_options}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sandbox-loop",
                                       daemon=True)
        self.server = None
        self.manager = None
        self.network = Network()
        self.images = ImageResolver(root / "images")

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        self.server = KubeAPIServer("127.0.0.1", port=0)
        self.call(self.server.start())
        self.kubeconfig = self.root / "kubeconfig"
        write_kubeconfig(self.kubeconfig, self.server.url)
        self.ctx = SandboxContext(
            state_dir=self.root / "state", api_url=self.server.url, kubeconfig=self.kubeconfig,
            network=self.network, images=self.images, bin_path=bin_path())
        self.manager = ControllerManager(self.ctx, **self.manager_options)
        self.manager.install_hooks(self.server)
        self.call(self.manager.start())
        api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
        self.api = api
        self.core = kubernetes.client.CoreV1Api(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.batch = kubernetes.client.BatchV1Api(api)

    def stop(self) -> None:
        try:
            if self.manager is not None:
                self.call(self.manager.stop(), timeout=30)
        finally:
            try:
                if self.server is not None:
                    self.call(self.server.stop(), timeout=15)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(10)
                if hasattr(self, "api"):
                    self.api.close()

    def kubectl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                              check=False, capture_output=True, text=True, timeout=timeout)


def wait_for(check, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``check`` until it returns something truthy; fail with its last answer."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def living_in_groups(groups: set[int]) -> list[int]:
    """Pids of live (non-zombie) processes whose process group is one of ``groups``."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) in groups:
            alive.append(int(entry.name))
    return alive


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


# -- manifests ---------------------------------------------------------------------------------

def web_container(script: str = HTTP_SERVER, **extra) -> dict:
    """A container running ``script`` with an HTTP port named "http" (8080 in the pod)."""
    container = {
        "name": "web", "image": "sandbox.invalid/web:1", "command": ["python", "-c", script],
        "ports": [{"containerPort": 8080, "name": "http"}],
    }
    container.update(extra)
    return container


def deployment(name: str, replicas: int = 2, container: dict | None = None,
               grace_s: int = 2, **spec) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container or web_container()],
                         "terminationGracePeriodSeconds": grace_s},
            },
            **spec,
        },
    }


def bare_pod(name: str, containers: list[dict], restart: str = "Always", grace_s: int = 2,
             **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": containers, "restartPolicy": restart,
                     "terminationGracePeriodSeconds": grace_s, **spec}}


def python_container(code: str, name: str = "main", **extra) -> dict:
    return {"name": name, "image": "sandbox.invalid/python:3", "command": ["python", "-c", code],
            **extra}


def job(name: str, code: str, restart: str = "Never", backoff_limit: int = 1, **spec) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit,
                 "template": {"spec": {"restartPolicy": restart,
                                       "containers": [python_container(code, "task")]}},
                 **spec},
    }


# -- reading state -----------------------------------------------------------------------------

def condition(obj, kind: str):
    for cond in (obj.status.conditions or []) if obj and obj.status else []:
        if cond.type == kind:
            return cond
    return None


def deployment_ready(box: Sandbox, namespace: str, name: str, replicas: int):
    d = box.apps.read_namespaced_deployment(name, namespace)
    s = d.status
    if s is None:
        return None
    done = (s.observed_generation or 0) >= d.metadata.generation and \
        (s.updated_replicas or 0) == replicas and (s.ready_replicas or 0) == replicas and \
        (s.available_replicas or 0) == replicas and (s.replicas or 0) == replicas
    return d if done else None


def pods_of(box: Sandbox, namespace: str, selector: str, active_only: bool = True) -> list:
    pods = box.core.list_namespaced_pod(namespace, label_selector=selector).items
    if active_only:
        pods = [p for p in pods if not p.metadata.deletion_timestamp]
    return pods


def pod_ready(pod) -> bool:
    cond = condition(pod, "Ready")
    return bool(cond and cond.status == "True")


def events_for(box: Sandbox, namespace: str, name: str) -> list:
    return [e for e in box.core.list_namespaced_event(namespace).items
            if e.involved_object.name == name]
