"""The sandbox daemon: one process that plays AWS and a Kubernetes cluster on this machine.

``python -m runbook_lib.sandbox.daemon --dir DIR`` is what :func:`runbook_lib.sandbox.up`
starts, detached. It runs as two processes:

- the *supervisor* (this command): a small process that marks itself as the child subreaper
  (``PR_SET_CHILD_SUBREAPER``), starts the worker, forwards SIGTERM/SIGINT to it, and once the
  worker has exited, however it died (SIGKILL included), stops every process that is still
  below it: pod processes and PostgreSQL servers become its children when their parent dies,
  so none can be orphaned;
- the *worker* (``--worker``), which runs everything in-process: moto in server mode (with
  ``MOTO_IAM_LOAD_MANAGED_POLICIES=true`` set before moto is imported), the RDS stand-in that
  turns moto's RDS instances into embedded PostgreSQL servers, our Kubernetes API server, and
  the controller manager with its kubelet. It gets SIGTERM if the supervisor dies.

When every part answers, the worker writes ``DIR/state.json`` (0600; the URLs, pids, ports and
the RDS map that :func:`runbook_lib.sandbox.status` reads) and an admin kubeconfig
``DIR/kubeconfig``. On SIGTERM or SIGINT it stops the parts in reverse order: controllers first
(pod processes get SIGTERM and their grace period), then the PostgreSQL servers, the API server
and moto; then it removes the state file. Both processes log to ``DIR/daemon.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

log = logging.getLogger("runbook_lib.sandbox.daemon")

STATE_FILE = "state.json"
KUBECONFIG_FILE = "kubeconfig"
LOG_FILE = "daemon.log"
DEFAULT_REGION = "us-west-2"
INSTANCE_ENV = "RUNBOOK_SANDBOX_INSTANCE"
WARMUP_ENV = "RUNBOOK_SANDBOX_WARMUP"

# How long the supervisor gives leftover processes after SIGTERM before SIGKILL.
SWEEP_GRACE_S = 5.0

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

# Services whose moto code is imported in the background once the sandbox is ready, so the
# runbook's first call to each does not pay for it.
WARM_SERVICES = ("sts", "iam", "ec2", "eks", "rds", "ecr", "cloudformation")


def _prctl(option: int, value: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, value, 0, 0, 0)


def _log_setup(directory: Path, role: str) -> None:
    handler = logging.FileHandler(directory / LOG_FILE)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {role}[%(process)d] %(name)s %(levelname)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # One line per HTTP request would drown what an operator needs to follow.
    for noisy in ("werkzeug", "aiohttp.access", "botocore", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------
# The supervisor


def supervise(directory: Path) -> int:
    """Run the worker and make sure nothing it started outlives it."""
    _log_setup(directory, "supervisor")
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    me = os.getpid()

    with open(directory / LOG_FILE, "ab") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runbook_lib.sandbox.daemon",
                "--dir",
                str(directory),
                "--worker",
                "--supervisor-pid",
                str(me),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_worker_preexec,  # noqa: PLW1509 - the supervisor has a single thread
        )
    log.info("worker started (pid %d)", worker.pid)

    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    # Reap every child: the worker, and any orphan that the kernel hands to us.
    code = None
    while code is None:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == worker.pid:
            code = os.waitstatus_to_exitcode(status)
            worker.returncode = code
    log.info("worker exited with %s", code)

    leftovers = _sweep()
    if leftovers:
        log.warning("stopped %d process(es) the worker left behind", leftovers)
    return 0 if code is None else (code if code >= 0 else 128 - code)


def _worker_preexec() -> None:  # runs in the child between fork and exec
    # The worker stops (orderly) when the supervisor dies, even by SIGKILL.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _sweep() -> int:
    """SIGTERM every process below us, wait, SIGKILL the rest; return how many there were."""
    import psutil

    me = psutil.Process()
    procs = me.children(recursive=True)
    if not procs:
        return 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            log.info("stopping leftover process %d (%s)", proc.pid, proc.name())
            proc.terminate()
    _gone, alive = psutil.wait_procs(procs, timeout=SWEEP_GRACE_S)
    for proc in alive + me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)
    # Reap whatever was reparented to us meanwhile.
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    return len(procs)


# ---------------------------------------------------------------------------------------------
# The worker


class Worker:
    """The parts of the sandbox, started and stopped in order."""

    def __init__(self, directory: Path, supervisor_pid: int):
        self.directory = directory
        self.supervisor_pid = supervisor_pid
        self.instance = os.environ.get(INSTANCE_ENV) or uuid.uuid4().hex
        self.started = time.monotonic()
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._state_lock = threading.Lock()
        self.network = None
        self.images = None
        self.rds = None
        self.moto = None
        self._moto_started = None
        self.moto_url = ""
        self.account_id = ""
        self.api = None
        self.controllers = None
        self.kubeconfig = directory / KUBECONFIG_FILE
        self.ready = False
        self.ready_s = 0.0

    async def start(self) -> None:
        from runbook_lib.sandbox.images import ImageResolver, bin_path
        from runbook_lib.sandbox.network import Network
        from runbook_lib.sandbox.rds import RdsStandIn

        # Database files a killed daemon may have left are of no use to anyone.
        shutil.rmtree(self.directory / "rds", ignore_errors=True)

        # Shared pieces, and the RDS hook (before moto's RDS code can be imported).
        self.network = Network()
        self.images = ImageResolver(self.directory)
        self.rds = RdsStandIn(self.directory / "rds", self.network, on_change=self.write_state)
        self.rds.install()

        # moto on its own thread; its import is the slowest step, the API server's is next.
        import asyncio

        self._moto_started = asyncio.get_running_loop().run_in_executor(None, self._start_moto)

        from runbook_lib.sandbox.kubeapi import KubeAPIServer, write_kubeconfig

        self.api = KubeAPIServer(host="127.0.0.1", port=0)
        await self.api.start()
        write_kubeconfig(self.kubeconfig, self.api.url)
        os.chmod(self.kubeconfig, 0o600)
        log.info("Kubernetes API at %s", self.api.url)

        from runbook_lib.sandbox.context import SandboxContext
        from runbook_lib.sandbox.controllers import ControllerManager

        ctx = SandboxContext(
            state_dir=self.directory,
            api_url=self.api.url,
            kubeconfig=self.kubeconfig,
            network=self.network,
            images=self.images,
            bin_path=bin_path(),
        )
        self.controllers = ControllerManager(ctx)
        self.controllers.install_hooks(self.api)
        await self.controllers.start()
        log.info("controllers started")

        await self._moto_started
        self.ready_s = round(time.monotonic() - self.started, 3)
        self.ready = True
        self.write_state()
        log.info("sandbox ready in %.2f s", self.ready_s)

    def _start_moto(self) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        self.account_id = DEFAULT_ACCOUNT_ID
        log.info("AWS (moto) at %s", self.moto_url)

    async def stop(self) -> None:
        """Stop in reverse order; each step runs even when an earlier one failed."""
        import asyncio

        if self.controllers is not None:
            with _logged("stopping the controllers"):
                await self.controllers.stop()
        if self.rds is not None:
            with _logged("stopping the PostgreSQL servers"):
                await asyncio.get_running_loop().run_in_executor(None, self.rds.shutdown)
        if self.api is not None:
            with _logged("stopping the Kubernetes API server"):
                await self.api.stop()
        if self._moto_started is not None:
            # moto may still be starting on its thread (a start that failed elsewhere).
            with contextlib.suppress(Exception):
                await self._moto_started
        if self.moto is not None:
            with _logged("stopping moto"):
                await asyncio.get_running_loop().run_in_executor(None, self.moto.stop)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / STATE_FILE).unlink()
        log.info("sandbox stopped")

    def write_state(self) -> None:
        """Write ``state.json`` (0600, replaced atomically). Called again on every RDS change."""
        if not self.ready:
            return
        rds = self.rds.instances() if self.rds is not None else {}
        kube_port = int(self.api.url.rsplit(":", 1)[1].split("/")[0])
        moto_port = int(self.moto_url.rsplit(":", 1)[1])
        state = {
            "version": 1,
            "directory": str(self.directory),
            "pid": os.getpid(),
            "supervisor_pid": self.supervisor_pid,
            "instance": self.instance,
            "kube_url": self.api.url,
            "kubeconfig": str(self.kubeconfig),
            "aws_endpoint_url": self.moto_url,
            "account_id": self.account_id,
            "region": DEFAULT_REGION,
            "started_at": self.started_at,
            "ready_s": self.ready_s,
            "log": str(self.directory / LOG_FILE),
            "rds": rds,
            "network": self.network.entries(),
            "ports": [kube_port, moto_port]
            + [int(v["local"].rsplit(":", 1)[1]) for v in rds.values()]
            + [int(v["server_port"]) for v in rds.values()],
        }
        with self._state_lock:
            write_private_json(self.directory / STATE_FILE, state)


def write_private_json(path: Path, data: dict) -> None:
    """Write JSON readable by the owner only, replacing ``path`` atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


@contextlib.contextmanager
def _logged(step: str):
    try:
        yield
    except Exception:
        log.exception("failed %s", step)


def _warm_up(region: str) -> None:
    """Import moto's code for the services the runbook uses, off the critical path."""
    started = time.monotonic()
    try:
        from moto.backends import get_backend
        from moto.core import DEFAULT_ACCOUNT_ID

        for service in WARM_SERVICES:
            accounts = get_backend(service)[DEFAULT_ACCOUNT_ID]
            # Global services (IAM: its first use loads the AWS-managed policies) have no region.
            for name in (region, "global", "aws"):
                try:
                    accounts[name]
                    break
                except KeyError:
                    continue
    except Exception:
        log.warning("warming up moto failed", exc_info=True)
        return
    log.info("moto services warmed up in %.1f s", time.monotonic() - started)


async def _serve(directory: Path, supervisor_pid: int) -> int:
    import asyncio

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    worker = Worker(directory, supervisor_pid)
    code = 0
    try:
        start = asyncio.ensure_future(worker.start())
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({start, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if start in done:
            start.result()
            if os.environ.get(WARMUP_ENV, "1") != "0":
                threading.Thread(
                    target=_warm_up, args=(DEFAULT_REGION,), name="warm-up", daemon=True
                ).start()
            await stopping
        else:
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await start
        log.info("stopping on request")
    except Exception:
        log.exception("the sandbox failed to start")
        code = 1
    finally:
        await worker.stop()
    return code


def work(directory: Path, supervisor_pid: int) -> int:
    import asyncio

    # Without it moto has no AWS-managed IAM policies (AmazonEKSClusterPolicy, …); it must be
    # set before moto is first imported.
    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    _log_setup(directory, "worker")
    if supervisor_pid and os.getppid() != supervisor_pid:
        log.error("the supervisor is gone; not starting")
        return 1
    return asyncio.run(_serve(directory, supervisor_pid))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runbook_lib.sandbox.daemon")
    parser.add_argument("--dir", required=True, type=Path, help="the sandbox directory")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--supervisor-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if args.worker:
        return work(directory, args.supervisor_pid)
    return supervise(directory)


if __name__ == "__main__":
    sys.exit(main())
