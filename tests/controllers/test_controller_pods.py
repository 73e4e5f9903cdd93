"""Pods as local processes: restarts and CrashLoopBackOff, probes, environment and $(VAR)
expansion, init containers with volumes, images, and termination with a grace period."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import kubernetes
import pytest
from controller_harness import (
    HTTP_SERVER,
    SLOW_TO_STOP,
    bare_pod,
    condition,
    events_for,
    pid_alive,
    pod_ready,
    python_container,
    wait_for,
    web_container,
)

pytestmark = pytest.mark.timeout(60)


def read_pod(sandbox, namespace, name):
    return sandbox.core.read_namespaced_pod(name, namespace)


def phase_is(sandbox, namespace, name, *phases):
    pod = read_pod(sandbox, namespace, name)
    return pod if pod.status.phase in phases else None


def test_crashing_container_restarts_into_crash_loop_back_off(sandbox, namespace):
    code = "print('boom', flush=True); raise SystemExit(3)"
    sandbox.core.create_namespaced_pod(namespace, bare_pod("crashy", [python_container(code)]))

    def in_back_off():
        pod = read_pod(sandbox, namespace, "crashy")
        status = (pod.status.container_statuses or [None])[0]
        waiting = status.state.waiting if status else None
        if status and status.restart_count >= 2 and waiting and \
                waiting.reason == "CrashLoopBackOff":
            return pod
        return None

    pod = wait_for(in_back_off, timeout=15, what="CrashLoopBackOff after 2 restarts")
    status = pod.status.container_statuses[0]
    assert pod.status.phase == "Running"
    assert status.last_state.terminated.exit_code == 3
    assert status.last_state.terminated.reason == "Error"
    assert "back-off" in status.state.waiting.message
    assert "boom" in sandbox.core.read_namespaced_pod_log("crashy", namespace, previous=True)
    assert any(e.reason == "BackOff" for e in events_for(sandbox, namespace, "crashy"))


def test_failing_liveness_probe_restarts_the_container(sandbox, namespace):
    probe = {"httpGet": {"path": "/fail", "port": "http"}, "periodSeconds": 1,
             "failureThreshold": 1}
    sandbox.core.create_namespaced_pod(
        namespace, bare_pod("sick", [web_container(livenessProbe=probe)], grace_s=1))
    def restarted():
        pod = read_pod(sandbox, namespace, "sick")
        statuses = pod.status.container_statuses or []
        return pod if statuses and statuses[0].restart_count >= 1 else None

    pod = wait_for(restarted, timeout=15, what="a liveness restart")
    assert pod.status.container_statuses[0].last_state.terminated is not None
    reasons = {e.reason for e in events_for(sandbox, namespace, "sick")}
    assert {"Unhealthy", "Killing"} <= reasons


def test_failing_readiness_probe_keeps_the_pod_unready(sandbox, namespace):
    probe = {"httpGet": {"path": "/fail", "port": 8080}, "periodSeconds": 1}
    sandbox.core.create_namespaced_pod(
        namespace, bare_pod("unready", [web_container(readinessProbe=probe)]))
    wait_for(lambda: phase_is(sandbox, namespace, "unready", "Running"), timeout=10)
    time.sleep(2.5)
    pod = read_pod(sandbox, namespace, "unready")
    assert not pod_ready(pod)
    assert condition(pod, "Ready").reason == "ContainersNotReady"
    assert pod.status.container_statuses[0].ready is False
    assert pod.status.container_statuses[0].restart_count == 0
    messages = [e.message for e in events_for(sandbox, namespace, "unready")
                if e.reason == "Unhealthy"]
    assert any("Readiness probe failed: HTTP probe failed with statuscode: 500" in m
               for m in messages)


def test_env_from_secrets_fields_and_expansion(sandbox, namespace):
    url = "postgresql://app:s3cret@db.example.internal:5432/app"
    sandbox.core.create_namespaced_secret(namespace, {
        "metadata": {"name": "db"},
        "data": {"url": base64.b64encode(url.encode()).decode()}})
    sandbox.network.add("db.example.internal", 5432, "127.0.0.1", 15432)
    code = ("import os, sys; e = os.environ; "
            "print('|'.join([e['DB'], e['POD'], e['NS'], e['IP'], e['APP'], e['GREETING'], "
            "e['HOSTNAME'], e['PORT']] + sys.argv[1:]))")
    container = python_container(
        code,
        args=["$(POD)-arg", "$$(POD)", "$(UNDEFINED)"],
        env=[
            {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "GREETING", "value": "hi $(POD)"},
        ])
    sandbox.core.create_namespaced_pod(namespace, bare_pod("envy", [container], "Never"))
    wait_for(lambda: phase_is(sandbox, namespace, "envy", "Succeeded", "Failed"), timeout=10)
    line = sandbox.core.read_namespaced_pod_log("envy", namespace).strip()
    fields = line.split("|")
    assert fields[0] == "postgresql://app:s3cret@127.0.0.1:15432/app"
    assert fields[1:7] == ["envy", namespace, "127.0.0.1", "envy", "hi envy", "envy"]
    assert fields[7].isdigit()
    assert fields[8:] == ["envy-arg", "$(POD)", "$(UNDEFINED)"]


def test_missing_secret_waits_with_create_container_config_error(sandbox, namespace):
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    container = python_container("import os; print(len(os.environ['TOKEN']))", env=env)
    sandbox.core.create_namespaced_pod(namespace, bare_pod("patient", [container], "Never"))

    def waiting_message():
        statuses = read_pod(sandbox, namespace, "patient").status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.message if waiting and \
            waiting.reason == "CreateContainerConfigError" else None

    assert wait_for(waiting_message, timeout=10) == 'secret "later" not found'
    sandbox.core.create_namespaced_secret(namespace, {"metadata": {"name": "later"},
                                                      "data": {"other": "eA=="}})
    wait_for(lambda: waiting_message() == f"couldn't find key token in Secret {namespace}/later",
             timeout=10)
    sandbox.core.patch_namespaced_secret("later", namespace, {"data": {"token": "eHl6"}})
    wait_for(lambda: phase_is(sandbox, namespace, "patient", "Succeeded"), timeout=15)
    assert sandbox.core.read_namespaced_pod_log("patient", namespace).strip() == "3"


def test_sigterm_then_grace_period_then_sigkill(sandbox, namespace):
    sandbox.core.create_namespaced_pod(
        namespace, bare_pod("stubborn", [python_container(SLOW_TO_STOP)], grace_s=1))
    log = wait_for(lambda: sandbox.core.read_namespaced_pod_log("stubborn", namespace)
                   if phase_is(sandbox, namespace, "stubborn", "Running") else None, timeout=10)
    pid = int(re.search(r"pid (\d+)", log).group(1))
    assert pid_alive(pid)

    started = time.monotonic()
    sandbox.core.delete_namespaced_pod("stubborn", namespace)
    pod = read_pod(sandbox, namespace, "stubborn")
    assert pod.metadata.deletion_timestamp is not None
    wait_for(lambda: "got SIGTERM" in sandbox.core.read_namespaced_pod_log("stubborn", namespace),
             timeout=5, what="SIGTERM to reach the process")

    def gone():
        try:
            read_pod(sandbox, namespace, "stubborn")
            return False
        except kubernetes.client.ApiException as exc:
            return exc.status == 404

    wait_for(gone, timeout=10, what="the pod to be removed")
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 4.0, elapsed
    assert not pid_alive(pid)


def test_init_container_volumes_and_image_command(sandbox, namespace, tmp_path):
    # An image built in the sandbox: ENTRYPOINT/CMD from its Dockerfile, WORKDIR its context.
    context = tmp_path / "app"
    context.mkdir()
    (context / "main.py").write_text(
        "import os, sys\n"
        "print(open(os.environ['SSL_CERT_FILE']).read().strip().replace('\\n', '+'))\n"
        "print('args', *sys.argv[1:])\n"
        "print('cwd-has-main', os.path.exists('main.py'))\n")
    (context / "Dockerfile").write_text(
        'FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nENTRYPOINT ["python", "main.py"]\n'
        'CMD ["from-cmd"]\n')
    sandbox.images.record_build("registry.example/app:1", context, context / "Dockerfile")
    sandbox.core.create_namespaced_secret(namespace, {
        "metadata": {"name": "tls"}, "data": {"tls.crt": base64.b64encode(b"CERT").decode()}})

    init = {"name": "setup-certs", "image": "alpine:latest",
            "command": ["sh", "-c", "echo base > /certs/ca.crt && cat /tls/tls.crt >> /certs/ca.crt"],
            "volumeMounts": [{"name": "tls-cert", "mountPath": "/tls", "readOnly": True},
                             {"name": "ca-certs", "mountPath": "/certs"}]}
    main = {"name": "app", "image": "registry.example/app:1",
            "env": [{"name": "SSL_CERT_FILE", "value": "/certs/ca.crt"}],
            "volumeMounts": [{"name": "ca-certs", "mountPath": "/certs", "readOnly": True}]}
    volumes = [{"name": "tls-cert", "secret": {"secretName": "tls",
                                               "items": [{"key": "tls.crt", "path": "tls.crt"}]}},
               {"name": "ca-certs", "emptyDir": {}}]
    pod = bare_pod("certs", [main], "Never", initContainers=[init], volumes=volumes)
    sandbox.core.create_namespaced_pod(namespace, pod)
    pod = wait_for(lambda: phase_is(sandbox, namespace, "certs", "Succeeded", "Failed"),
                   timeout=10)
    text = sandbox.core.read_namespaced_pod_log("certs", namespace)
    assert pod.status.phase == "Succeeded", text
    assert text.splitlines() == ["base+CERT", "args from-cmd", "cwd-has-main True"]
    init_status = pod.status.init_container_statuses[0]
    assert init_status.state.terminated.reason == "Completed"
    assert condition(pod, "Initialized").status == "True"

    # The secret's file does not outlive the pod's processes.
    state = Path(sandbox.ctx.state_dir)
    assert not list(state.glob(f"pods/{namespace}_certs_*/volumes/tls-cert/tls.crt"))


def test_unknown_image_without_command_backs_off_pulling(sandbox, namespace):
    container = {"name": "ghost", "image": "registry.example/never-built:1"}
    sandbox.core.create_namespaced_pod(namespace, bare_pod("ghost", [container]))

    def reason():
        statuses = read_pod(sandbox, namespace, "ghost").status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.reason if waiting else None

    wait_for(lambda: reason() == "ErrImagePull", timeout=10)
    wait_for(lambda: reason() == "ImagePullBackOff", timeout=10)
    assert read_pod(sandbox, namespace, "ghost").status.phase == "Pending"


def test_http_server_pod_serves_on_its_local_port(sandbox, namespace):
    sandbox.core.create_namespaced_pod(namespace, bare_pod("solo", [web_container(HTTP_SERVER)]))
    def ready():
        pod = read_pod(sandbox, namespace, "solo")
        return pod if pod_ready(pod) else None

    pod = wait_for(ready, timeout=10)
    assert condition(pod, "ContainersReady").status == "True"
    assert pod.status.container_statuses[0].started is True


def test_kubectl_logs_follow_streams_until_the_container_exits(sandbox, namespace):
    code = ("import time; print('first', flush=True); time.sleep(1.0); "
            "print('second', flush=True)")
    sandbox.core.create_namespaced_pod(namespace, bare_pod("talker", [python_container(code)],
                                                           "Never"))
    wait_for(lambda: phase_is(sandbox, namespace, "talker", "Running"), timeout=10)
    result = sandbox.kubectl("-n", namespace, "logs", "-f", "talker", timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["first", "second"]


def test_exec_readiness_probe_follows_the_command(sandbox, namespace):
    code = ("import time; time.sleep(0.5); open('ready', 'w').close(); print('ready', flush=True);"
            " time.sleep(60)")
    probe = {"exec": {"command": ["python", "-c",
                                  "import os, sys; sys.exit(0 if os.path.exists('ready') else 1)"]},
             "periodSeconds": 1}
    sandbox.core.create_namespaced_pod(
        namespace, bare_pod("execready", [python_container(code, readinessProbe=probe)]))

    def ready():
        pod = read_pod(sandbox, namespace, "execready")
        return pod if pod_ready(pod) else None

    wait_for(ready, timeout=10, what="the exec probe to pass")
