"""One pod on the sandbox node: its containers as local processes, its probes and its status.

The kubelet starts a :class:`PodWorker` for every pod bound to the sandbox node. The worker

1. publishes the pod's local ports (every container port and probe port gets a free port on
   127.0.0.1, written to the pod annotation ``sandbox.runbook.dbos.dev/ports``);
2. prepares the volumes as directories under the pod's state directory: ``emptyDir``,
   ``secret`` and ``configMap`` (files written 0600 in a 0700 directory, secret files removed
   when the pod stops), ``hostPath`` (the host path itself) and ``persistentVolumeClaim`` (one
   directory per claim); other volume types are empty directories. A container's ``mountPath``
   prefixes in its command, args, env values and workingDir are rewritten to those directories;
   ``subPath`` is honoured, ``readOnly`` is not enforced;
3. runs the init containers in order to completion, then all containers, each under its restart
   policy with CrashLoopBackOff (first restart at once, then 1 s doubling to 20 s; the back-off
   resets after a run of 40 s), with its probes on their own timers;
4. keeps ``status`` current: phase, conditions, containerStatuses with waiting, running and
   terminated states, restartCount and lastState;
5. on termination sends SIGTERM to each container's process group, waits the grace period, then
   SIGKILL.

Environment of a container process: PATH is ``ctx.bin_path``; HOME a directory of the pod; the
image's env (without PATH); the container's ``envFrom``/``env`` as Kubernetes resolves them;
then PORT (the local port of the container's first port), ``SANDBOX_PORT_<containerPort>`` for
every mapped port, HOSTNAME (the pod name) and, for sandbox add-on images, KUBECONFIG.
``ctx.network.rewrite`` maps cluster host names in env values, command and args to local
addresses. CPU and memory requests and limits are not enforced; the user is not switched.
Values of the environment are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runbook_lib.sandbox.controllers.client import PODS, ApiError
from runbook_lib.sandbox.controllers.probes import (
    ProbeTiming,
    exec_probe,
    http_probe,
    probe_port,
    tcp_probe,
)
from runbook_lib.sandbox.controllers.process import (
    allocate_port,
    claim_port,
    exit_code,
    forget_group,
    release_port,
    spawn,
    stop_group,
)
from runbook_lib.sandbox.controllers.spec import (
    ContainerConfigError,
    container_argv,
    expand,
    resolve_env,
    rewrite_mounts,
)
from runbook_lib.sandbox.controllers.util import PORTS_ANNOTATION, meta, now_rfc3339

if TYPE_CHECKING:
    from runbook_lib.sandbox.controllers.kubelet import Kubelet

log = logging.getLogger("runbook_lib.sandbox.controllers.pod_worker")

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 20.0
DEFAULT_GRACE_S = 30


class Container:
    """The runtime state of one container of the pod, across its restarts."""

    def __init__(self, spec: dict, init: bool, restart_count: int = 0):
        self.spec = spec
        self.name: str = spec.get("name", "")
        self.init = init
        self.restart_count = restart_count
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict = {}
        self.ready = False
        self.started = False
        self.proc: asyncio.subprocess.Process | None = None
        self.has_run = False
        self.run_index = -1
        self.container_id = ""
        self.pulled = False
        self.crash_backoff_s = 0.0
        self.retry_backoff_s = 0.0
        self.run_env: dict[str, str] = {}
        self.run_cwd = ""
        self.mounts: list[tuple[str, str]] = []
        self.own_port: int | None = None
        self.kill_task: asyncio.Task | None = None
        self.probe_task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return "running" in self.state

    def status(self) -> dict:
        image = self.spec.get("image", "")
        result: dict[str, Any] = {
            "name": self.name, "image": image,
            "imageID": f"sandbox://{image}" if self.pulled else "",
            "ready": self.ready and self.running, "restartCount": self.restart_count,
            "started": self.started and self.running,
            "state": self.state, "lastState": self.last_state,
        }
        if self.container_id:
            result["containerID"] = self.container_id
        return result


class PodWorker:
    def __init__(self, kubelet: Kubelet, pod: dict):
        self.kubelet = kubelet
        self.pod = pod
        m = meta(pod)
        self.namespace: str = m.get("namespace", "default")
        self.name: str = m.get("name", "")
        self.uid: str = m.get("uid", "")
        self.dir: Path = kubelet.pod_dir(self.namespace, self.name, self.uid)
        spec = pod.get("spec") or {}
        self.restart_policy = spec.get("restartPolicy") or "Always"
        previous = {c.get("name"): int(c.get("restartCount") or 0) for c in
                    ((pod.get("status") or {}).get("containerStatuses") or [])
                    + ((pod.get("status") or {}).get("initContainerStatuses") or [])}
        self.init_containers = [Container(c, True, previous.get(c.get("name"), 0))
                                for c in spec.get("initContainers") or []]
        self.containers = [Container(c, False, previous.get(c.get("name"), 0))
                           for c in spec.get("containers") or []]
        self.ports: dict[int, int] = {}
        self.volume_dirs: dict[str, Path] = {}
        self.network_ready = False
        self.initialized = not self.init_containers
        self.init_failed = False
        self.terminal_phase: str | None = None
        self.start_time = now_rfc3339()
        self.stopping = asyncio.Event()
        self.done = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.termination: asyncio.Task | None = None
        self._status_task: asyncio.Task | None = None
        self._dirty = asyncio.Event()
        self._last_written: dict | None = None
        self._conditions: dict[str, tuple[str, str]] = {}
        for cond in (pod.get("status") or {}).get("conditions") or []:
            self._conditions[cond.get("type", "")] = (cond.get("status", ""),
                                                      cond.get("lastTransitionTime", ""))

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        for c in self.containers:
            c.state = {"waiting": {"reason": "PodInitializing" if self.init_containers
                                   else "ContainerCreating"}}
        for c in self.init_containers:
            c.state = {"waiting": {"reason": "PodInitializing"}}
        self.task = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")
        self._status_task = asyncio.create_task(self._status_loop())
        self.mark_dirty()

    def all_containers(self) -> list[Container]:
        return self.init_containers + self.containers

    def container(self, name: str | None) -> Container | None:
        if not name:
            return self.containers[0] if self.containers else None
        return next((c for c in self.all_containers() if c.name == name), None)

    async def _run(self) -> None:
        try:
            if not await self._setup_network():
                return
            if not await self._prepare_volumes():
                return
            for c in self.init_containers:
                code = await self._supervise(c)
                if self.stopping.is_set():
                    return
                if code != 0:
                    self.init_failed = True
                    return
            self.initialized = True
            self.mark_dirty()
            await asyncio.gather(*(self._supervise(c) for c in self.containers))
        finally:
            if not self.stopping.is_set():
                self._release_resources()
            self.done.set()
            self.mark_dirty()

    async def terminate(self, grace_s: float, write_status: bool = True) -> None:
        """Stop every container (SIGTERM, grace, SIGKILL) and record the terminal phase."""
        self.stopping.set()
        running = [c for c in self.all_containers() if c.proc and c.proc.returncode is None]
        for c in running:
            self._event("Killing", f"Stopping container {c.name}", c=c)
        await asyncio.gather(*(stop_group(c.proc, grace_s) for c in running))
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), timeout=2.0)
            except (TimeoutError, asyncio.CancelledError):
                self.task.cancel()
        for c in self.all_containers():
            if c.probe_task:
                c.probe_task.cancel()
            # A process started while the others were being stopped goes too.
            if c.proc is not None and c.proc.returncode is None:
                await stop_group(c.proc, 0)
        self._release_resources()
        if self.terminal_phase is None:
            codes = [((c.state.get("terminated") or {}).get("exitCode")) for c in self.containers]
            self.terminal_phase = "Succeeded" if codes and all(x == 0 for x in codes) else "Failed"
        if write_status:
            await self._write_status()
        if self._status_task is not None:
            self._status_task.cancel()

    def _release_resources(self) -> None:
        for port in self.ports.values():
            release_port(port)
        for c in self.all_containers():
            if c.own_port:
                release_port(c.own_port)
        # Secret material does not outlive the pod's processes.
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            if "secret" in volume and volume.get("name") in self.volume_dirs:
                shutil.rmtree(self.volume_dirs[volume["name"]], ignore_errors=True)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when the pod is being stopped."""
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=max(seconds, 0.0))
        except TimeoutError:
            pass

    def _event(self, reason: str, message: str, warning: bool = False,
               c: Container | None = None) -> None:
        field = None
        if c is not None:
            field = f"spec.{'initContainers' if c.init else 'containers'}{{{c.name}}}"
        self.kubelet.events.record(self.pod, "Pod", reason, message,
                                   "Warning" if warning else "Normal", field_path=field)

    # -- network and volumes --------------------------------------------------------------------

    async def _setup_network(self) -> bool:
        existing = (meta(self.pod).get("annotations") or {}).get(PORTS_ANNOTATION)
        if existing:
            try:
                self.ports = {int(k): int(v) for k, v in json.loads(existing).items()}
            except (ValueError, AttributeError):
                self.ports = {}
            for port in self.ports.values():
                claim_port(port)
        wanted: list[int] = []
        for c in self.all_containers():
            for port in c.spec.get("ports") or []:
                if port.get("containerPort"):
                    wanted.append(int(port["containerPort"]))
            for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = c.spec.get(kind) or {}
                for action in ("httpGet", "tcpSocket"):
                    number = probe_port((probe.get(action) or {}).get("port"), c.spec)
                    if number:
                        wanted.append(int(number))
        for number in wanted:
            if number not in self.ports:
                self.ports[number] = allocate_port()
        value = json.dumps({str(k): v for k, v in sorted(self.ports.items())})
        while not self.stopping.is_set():
            try:
                updated = await self.kubelet.client.merge_patch(
                    PODS.path(self.namespace, self.name),
                    {"metadata": {"annotations": {PORTS_ANNOTATION: value}}})
                self.pod = updated
                self.kubelet.pods.remember(updated)
                break
            except ApiError as exc:
                if exc.status == 404:
                    return False
                await self._sleep(0.5)
            except (TimeoutError, OSError):
                await self._sleep(0.5)
        self.network_ready = True
        self.mark_dirty()
        return not self.stopping.is_set()

    async def _prepare_volumes(self) -> bool:
        volumes_root = self.dir / "volumes"
        volumes_root.mkdir(parents=True, exist_ok=True)
        os.chmod(volumes_root, stat.S_IRWXU)
        delay = BACKOFF_BASE_S
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            while not self.stopping.is_set():
                try:
                    self.volume_dirs[volume["name"]] = await self._prepare_volume(
                        volume, volumes_root)
                    break
                except ContainerConfigError as exc:
                    self._event("FailedMount", f'MountVolume.SetUp failed for volume '
                                f'"{volume.get("name")}" : {exc}', warning=True)
                    await self._sleep(delay)
                    delay = min(delay * 2, 5.0)
        for c in self.all_containers():
            c.mounts = []
            for mount in c.spec.get("volumeMounts") or []:
                local = self.volume_dirs.get(mount.get("name", ""))
                if local is None or not mount.get("mountPath"):
                    continue
                if mount.get("subPath"):
                    local = local / mount["subPath"]
                c.mounts.append((mount["mountPath"], str(local)))
        return not self.stopping.is_set()

    async def _prepare_volume(self, volume: dict, root: Path) -> Path:
        name = volume["name"]
        local = root / name
        if "hostPath" in volume:
            return Path(volume["hostPath"].get("path", str(local)))
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"].get("claimName", name)
            local = self.kubelet.ctx.state_dir / "volumes" / self.namespace / claim
            local.mkdir(parents=True, exist_ok=True)
            return local
        local.mkdir(parents=True, exist_ok=True)
        os.chmod(local, stat.S_IRWXU)
        source, getter = None, None
        if "secret" in volume:
            source, getter = volume["secret"], self.kubelet.get_secret
            ref_name, label = source.get("secretName", ""), "secret"
        elif "configMap" in volume:
            source, getter = volume["configMap"], self.kubelet.get_configmap
            ref_name, label = source.get("name", ""), "configmap"
        if source is None or getter is None:
            return local
        obj = await getter(self.namespace, ref_name)
        if obj is None:
            if source.get("optional"):
                return local
            raise ContainerConfigError(f'{label} "{ref_name}" not found')
        import base64

        if label == "secret":
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        else:
            data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in
                         (obj.get("binaryData") or {}).items()})
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if item.get("key") not in data:
                if source.get("optional"):
                    continue
                raise ContainerConfigError(
                    f'references non-existent {label} key: {item.get("key")}')
            target = local / item.get("path", item["key"])
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data[item["key"]])
        return local

    # -- containers -----------------------------------------------------------------------------

    async def _supervise(self, c: Container) -> int:
        """Run ``c`` under the pod's restart policy; return its last exit code."""
        code = 1
        while not self.stopping.is_set():
            outcome = await self._start(c)
            if outcome == "retry":
                continue
            run_started = time.monotonic()
            if outcome == "started" and c.proc is not None:
                c.probe_task = asyncio.create_task(self._probe(c, c.proc))
                pid = c.proc.pid
                returncode = await c.proc.wait()
                forget_group(pid)
                code = exit_code(returncode)
                log.info("pod %s/%s: container %s (pid %d) exited with code %d", self.namespace,
                         self.name, c.name, pid, code)
                c.probe_task.cancel()
                self._record_exit(c, code)
            else:
                code = 128
            if self.stopping.is_set():
                return code

            restart = (code != 0 and self.restart_policy != "Never") or (
                code == 0 and self.restart_policy == "Always" and not c.init)
            if not restart:
                return code

            # CrashLoopBackOff: at once the first time, then doubling up to the cap.
            if time.monotonic() - run_started > 2 * BACKOFF_CAP_S:
                c.crash_backoff_s = 0.0
            delay = c.crash_backoff_s
            c.crash_backoff_s = min(BACKOFF_CAP_S, max(BACKOFF_BASE_S, delay * 2))
            c.last_state = {"terminated": c.state.get("terminated", {})}
            if delay > 0:
                c.state = {"waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:g}s restarting failed container={c.name} "
                               f"pod={self.name}_{self.namespace}({self.uid})"}}
                self._event("BackOff", f"Back-off restarting failed container {c.name} in pod "
                            f"{self.name}_{self.namespace}({self.uid})", warning=True, c=c)
                self.mark_dirty()
                await self._sleep(delay)
        return code

    def _record_exit(self, c: Container, code: int) -> None:
        started = (c.state.get("running") or {}).get("startedAt", now_rfc3339())
        c.state = {"terminated": {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error",
            "startedAt": started, "finishedAt": now_rfc3339(), "containerID": c.container_id,
        }}
        c.ready = False
        c.started = False
        c.proc = None
        self.mark_dirty()

    async def _wait_retry(self, c: Container, reason: str, message: str) -> str:
        c.state = {"waiting": {"reason": reason, "message": message}}
        self.mark_dirty()
        delay = c.retry_backoff_s or BACKOFF_BASE_S
        c.retry_backoff_s = min(BACKOFF_CAP_S, delay * 2)
        await self._sleep(delay)
        return "retry"

    async def _start(self, c: Container) -> str:
        """Start one run of ``c``: "started", "retry" (not startable yet) or "start-error"."""
        ctx = self.kubelet.ctx
        image_name = c.spec.get("image", "")
        try:
            image = ctx.images.resolve(image_name) if image_name else None
        except Exception:
            log.debug("image resolver failed for %s", image_name, exc_info=True)
            image = None

        # An image the sandbox does not know can only run with an explicit command.
        if image is None and not c.spec.get("command"):
            message = f'failed to pull and unpack image "{image_name}": not found'
            self._event("Failed", f'Failed to pull image "{image_name}": {message}', True, c)
            self._event("Failed", "Error: ErrImagePull", True, c)
            if c.state.get("waiting", {}).get("reason") != "ImagePullBackOff":
                c.state = {"waiting": {"reason": "ErrImagePull", "message": message}}
                self.mark_dirty()
                await self._sleep(c.retry_backoff_s or BACKOFF_BASE_S)
            self._event("BackOff", f'Back-off pulling image "{image_name}"', True, c)
            return await self._wait_retry(c, "ImagePullBackOff",
                                          f'Back-off pulling image "{image_name}"')
        if not c.pulled:
            c.pulled = True
            self._event("Pulled", f'Container image "{image_name}" already present on machine',
                        c=c)

        # The environment, then the command line, as Kubernetes builds them.
        try:
            kube_env = await resolve_env(c.spec, self.pod, self.kubelet.get_secret,
                                         self.kubelet.get_configmap)
        except ContainerConfigError as exc:
            self._event("Failed", f"Error: {exc}", True, c)
            return await self._wait_retry(c, "CreateContainerConfigError", str(exc))
        argv = container_argv(c.spec, image)
        if not argv:
            self._event("Failed", "Error: no command specified", True, c)
            return await self._wait_retry(c, "CreateContainerError", "no command specified")
        c.retry_backoff_s = 0.0
        env, argv, cwd = self._runtime(c, image, kube_env, argv)

        executable = _find_executable(argv[0], cwd, ctx.bin_path)
        c.has_run, first = True, not c.has_run
        if not first:
            c.restart_count += 1
        if executable is None:
            message = f'exec: "{argv[0]}": executable file not found in $PATH'
            return self._start_error(c, message)
        c.run_index += 1
        log_path = self.dir / "logs" / c.name / f"{c.run_index}.log"
        try:
            c.proc = await spawn([executable] + argv[1:], cwd, env, log_path)
        except OSError as exc:
            return self._start_error(c, f'exec: "{argv[0]}": {exc.strerror}')
        if self.stopping.is_set():
            await stop_group(c.proc, 0)
            c.proc = None
            return "retry"
        log.info("pod %s/%s: container %s started (pid %d, run %d)", self.namespace, self.name,
                 c.name, c.proc.pid, c.run_index)
        c.run_env, c.run_cwd = env, str(cwd)
        c.container_id = f"sandbox://{self.uid[:8]}-{c.name}-{c.run_index}"
        c.state = {"running": {"startedAt": now_rfc3339()}}
        c.started = not c.spec.get("startupProbe")
        c.ready = c.started and not c.spec.get("readinessProbe") and not c.init
        self.mark_dirty()
        self._event("Created", f"Created container {c.name}", c=c)
        self._event("Started", f"Started container {c.name}", c=c)
        return "started"

    def _start_error(self, c: Container, message: str) -> str:
        now = now_rfc3339()
        c.state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": message,
                                  "startedAt": now, "finishedAt": now}}
        self._event("Failed", f"Error: {message}", True, c)
        self.mark_dirty()
        return "start-error"

    def _runtime(self, c: Container, image: Any, kube_env: dict[str, str],
                 argv: list[str]) -> tuple[dict[str, str], list[str], Path]:
        """The process environment, argv and working directory for one run of ``c``."""
        ctx = self.kubelet.ctx
        port = self._container_port(c)
        sandbox_env = {"PORT": str(port), "HOSTNAME": self.name}
        sandbox_env.update({f"SANDBOX_PORT_{k}": str(v) for k, v in self.ports.items()})
        if getattr(image, "sandbox_addon", False):
            sandbox_env["KUBECONFIG"] = str(ctx.kubeconfig)

        def local(text: str) -> str:
            return ctx.network.rewrite(rewrite_mounts(text, c.mounts))

        home = self.dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {"PATH": ctx.bin_path, "HOME": str(home), "LANG": "C.UTF-8"}
        if os.environ.get("TMPDIR"):
            env["TMPDIR"] = os.environ["TMPDIR"]
        env.update({k: str(v) for k, v in (getattr(image, "env", None) or {}).items()
                    if k != "PATH"})
        env.update({k: local(v) for k, v in kube_env.items()})
        env.update(sandbox_env)

        mapping = {**sandbox_env, **kube_env}
        argv = [local(expand(a, mapping)) for a in argv]
        cwd = self.dir
        workdir = c.spec.get("workingDir")
        if workdir:
            candidate = Path(rewrite_mounts(workdir, c.mounts))
            if candidate.is_dir():
                cwd = candidate
        elif getattr(image, "workdir", None) and Path(image.workdir).is_dir():
            cwd = Path(image.workdir)
        return env, argv, cwd

    def _container_port(self, c: Container) -> int:
        for port in c.spec.get("ports") or []:
            number = port.get("containerPort")
            if number and int(number) in self.ports:
                return self.ports[int(number)]
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = c.spec.get(kind) or {}
            for action in ("httpGet", "tcpSocket"):
                number = probe_port((probe.get(action) or {}).get("port"), c.spec)
                if number and int(number) in self.ports:
                    return self.ports[int(number)]
        if c.own_port is None:
            c.own_port = allocate_port()
        return c.own_port

    # -- probes ---------------------------------------------------------------------------------

    async def _probe(self, c: Container, proc: asyncio.subprocess.Process) -> None:
        startup = c.spec.get("startupProbe")
        if startup and not await self._probe_loop(c, proc, startup, "Startup"):
            return
        c.started = True
        if not c.spec.get("readinessProbe") and not c.init:
            c.ready = True
        self.mark_dirty()
        loops = [self._probe_loop(c, proc, c.spec[kind], label)
                 for kind, label in (("readinessProbe", "Readiness"), ("livenessProbe", "Liveness"))
                 if c.spec.get(kind) and not c.init]
        if loops:
            await asyncio.gather(*loops)

    async def _probe_loop(self, c: Container, proc: asyncio.subprocess.Process, probe: dict,
                          kind: str) -> bool:
        """Probe until the process ends. Startup returns True on success; a failure kills."""
        timing = ProbeTiming.of(probe)
        await asyncio.sleep(timing.initial_delay_s)
        successes = failures = 0
        while c.proc is proc and proc.returncode is None:
            ok, message = await self._perform(c, probe, timing.timeout_s)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if not ok:
                self._event("Unhealthy", f"{kind} probe failed: {message}", True, c)
            if kind == "Readiness":
                if ok and successes >= timing.success_threshold and not c.ready:
                    c.ready = True
                    self.mark_dirty()
                elif not ok and failures >= timing.failure_threshold and c.ready:
                    c.ready = False
                    self.mark_dirty()
            elif ok and kind == "Startup":
                return True
            elif failures >= timing.failure_threshold:
                self._event("Killing", f"Container {c.name} failed {kind.lower()} probe, will be "
                            "restarted", c=c)
                grace = probe.get("terminationGracePeriodSeconds")
                if grace is None:
                    grace = self._grace_s()
                c.kill_task = asyncio.create_task(stop_group(proc, float(grace)))
                return False
            await asyncio.sleep(timing.period_s)
        return False

    async def _perform(self, c: Container, probe: dict, timeout_s: float) -> tuple[bool, str]:
        if "httpGet" in probe or "tcpSocket" in probe:
            action = probe.get("httpGet") or probe.get("tcpSocket") or {}
            number = probe_port(action.get("port"), c.spec)
            local = self.ports.get(int(number)) if number else None
            if local is None:
                return False, f"probe port {action.get('port')} is not a port of the pod"
            if "httpGet" in probe:
                return await http_probe(self.kubelet.probe_session, action, local, timeout_s)
            return await tcp_probe(local, timeout_s)
        if "exec" in probe:
            argv = [self.kubelet.ctx.network.rewrite(rewrite_mounts(a, c.mounts))
                    for a in (probe["exec"].get("command") or [])]
            if not argv:
                return False, "no command"
            executable = _find_executable(argv[0], Path(c.run_cwd or self.dir),
                                          self.kubelet.ctx.bin_path)
            if executable is None:
                return False, f'exec: "{argv[0]}": executable file not found in $PATH'
            return await exec_probe([executable] + argv[1:], c.run_cwd or str(self.dir),
                                    c.run_env, timeout_s)
        return True, ""  # grpc probes are not supported and pass

    def _grace_s(self) -> float:
        value = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        return float(DEFAULT_GRACE_S if value is None else value)

    # -- status ---------------------------------------------------------------------------------

    def mark_dirty(self) -> None:
        self._dirty.set()

    def phase(self) -> str:
        if self.terminal_phase:
            return self.terminal_phase
        if self.init_failed:
            return "Failed"
        if not self.initialized:
            return "Pending"
        waiting = running = stopped = succeeded = 0
        for c in self.containers:
            if c.running:
                running += 1
            elif "terminated" in c.state:
                stopped += 1
                succeeded += c.state["terminated"].get("exitCode") == 0
            elif c.last_state.get("terminated"):
                stopped += 1
            else:
                waiting += 1
        if waiting:
            return "Pending"
        if running:
            return "Running"
        if not stopped:
            return "Pending"
        if self.restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if self.restart_policy == "OnFailure":
            return "Running"
        return "Failed"

    def status(self) -> dict:
        phase = self.phase()
        if phase in ("Succeeded", "Failed") and self.done.is_set():
            self.terminal_phase = phase
        now = now_rfc3339()
        pending_init = [c.name for c in self.init_containers
                        if (c.state.get("terminated") or {}).get("exitCode") != 0]
        unready = [c.name for c in self.containers if not (c.ready and c.running)]
        finished = phase in ("Succeeded", "Failed")

        def cond(kind: str, ok: bool, reason: str = "", message: str = "") -> dict:
            status = "True" if ok else "False"
            old = self._conditions.get(kind)
            since = old[1] if old and old[0] == status and old[1] else now
            self._conditions[kind] = (status, since)
            result = {"type": kind, "status": status, "lastProbeTime": None,
                      "lastTransitionTime": since}
            if not ok and reason:
                result["reason"] = reason
            if not ok and message:
                result["message"] = message
            return result

        if finished:
            ready = cond("Ready", False, "PodCompleted")
            containers_ready = cond("ContainersReady", False, "PodCompleted")
        else:
            text = f"containers with unready status: [{' '.join(unready)}]"
            ready = cond("Ready", not unready, "ContainersNotReady", text)
            containers_ready = cond("ContainersReady", not unready, "ContainersNotReady", text)
        conditions = [
            # The pod's "sandbox" (its ports) exists from network setup until it is stopped.
            cond("PodReadyToStartContainers", self.network_ready and not self.stopping.is_set()),
            cond("Initialized", self.initialized, "ContainersNotInitialized",
                 f"containers with incomplete status: [{' '.join(pending_init)}]"),
            ready, containers_ready, cond("PodScheduled", True),
        ]
        result = {
            "phase": phase, "conditions": conditions,
            "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.start_time, "qosClass": _qos_class(self.pod),
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.init_containers:
            result["initContainerStatuses"] = [c.status() for c in self.init_containers]
        return result

    async def _status_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await asyncio.sleep(0.02)  # let a burst of changes land in one write
            if not await self._write_status():
                if self.kubelet.pods.get(self.namespace, self.name) is None:
                    return
                await asyncio.sleep(0.5)
                self._dirty.set()

    async def _write_status(self) -> bool:
        status = self.status()
        if status == self._last_written:
            return True
        try:
            updated = await self.kubelet.client.merge_patch(
                PODS.path(self.namespace, self.name, "status"), {"status": status})
        except ApiError as exc:
            return exc.status == 404
        except (TimeoutError, OSError):
            return False
        if (meta(updated).get("uid") or self.uid) == self.uid:
            self.pod = {**updated, "spec": self.pod.get("spec")}
            self.kubelet.pods.remember(updated)
        self._last_written = status
        return True


def _find_executable(name: str, cwd: Path, bin_path: str) -> str | None:
    if "/" in name:
        path = Path(name) if name.startswith("/") else cwd / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        name = Path(name).name
    return shutil.which(name, path=bin_path)


def _qos_class(pod: dict) -> str:
    containers = ((pod.get("spec") or {}).get("containers") or [])
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for kind in ("cpu", "memory"):
            if kind not in limits or requests.get(kind, limits[kind]) != limits[kind]:
                return "Burstable"
    return "Guaranteed"
