"""Helpers for the JupyterLab tests: a real kernel driven over its messages, a real JupyterLab
server, and the environment both run in.

Everything started here is stopped by its own handle or process id, even when a test fails:
the kernel through its manager, JupyterLab through its REST shutdown and then its pid, and any
kernel JupyterLab left behind through the pids whose command line names this test's own runtime
folder.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "browser"

# Variables that would make a kernel headless, point it at another run, or hand it a secret.
_CLEARED = ("RUNBOOK_HEADLESS", "RUNBOOK_INTERACTIVE", "RUNBOOK_RECORD_DIR", "POSTGRES_PASSWORD",
            "APP_ROLE_PASSWORD", "CONDUCTOR_API_KEY", "RUNBOOK_GATE_TIMEOUT")


def interactive_env(**extra: str) -> dict[str, str]:
    """This process's environment as a person's JupyterLab kernel would see it."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PROJECT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


# A kernel, driven over its messages ------------------------------------------------------------


@dataclass
class Execution:
    """What one execute request produced."""

    msg_id: str
    messages: list[dict] = field(default_factory=list)
    reply: dict | None = None

    def of_type(self, *types: str) -> list[dict]:
        return [m for m in self.messages if m["msg_type"] in types]

    @property
    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.of_type("stream")
                       if m["content"]["name"] == "stdout")

    @property
    def error(self) -> dict | None:
        errors = self.of_type("error")
        return errors[0]["content"] if errors else None


class Kernel:
    """A real ipykernel, started with a given environment, driven with jupyter_client."""

    def __init__(self, env: dict[str, str], cwd: Path):
        from jupyter_client.manager import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(env=env, cwd=str(cwd))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=90)

    def stop(self) -> None:
        try:
            self.client.stop_channels()
        finally:
            self.manager.shutdown_kernel(now=True)

    def submit(self, code: str) -> Execution:
        return Execution(self.client.execute(code, store_history=False))

    def collect(self, execution: Execution, timeout_s: float = 60, until=None) -> Execution:
        """Read iopub until the execution is idle (or ``until(message)`` is true)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                message = self.client.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") != execution.msg_id:
                continue
            execution.messages.append(message)
            if until is not None and until(message):
                return execution
            if (message["msg_type"] == "status"
                    and message["content"]["execution_state"] == "idle"):
                execution.reply = self._reply_to(execution.msg_id)
                return execution
        raise TimeoutError(f"no end of execution within {timeout_s} s")

    def _reply_to(self, msg_id: str) -> dict:
        while True:
            reply = self.client.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]

    def run(self, code: str, timeout_s: float = 60) -> Execution:
        return self.collect(self.submit(code), timeout_s)

    def send_click(self, comm_id: str) -> None:
        """What JupyterLab sends when a button is clicked."""
        content = {"comm_id": comm_id,
                   "data": {"method": "custom", "content": {"event": "click"}}}
        message = self.client.session.msg("comm_msg", content)
        self.client.shell_channel.send(message)


def widget_comm(message: dict, model: str, **state) -> str | None:
    """The comm id when ``message`` opens a widget of ``model`` with the given state values."""
    if message["msg_type"] != "comm_open":
        return None
    data = message["content"].get("data", {}).get("state", {})
    if data.get("_model_name") != model:
        return None
    if all(data.get(k) == v for k, v in state.items()):
        return message["content"]["comm_id"]
    return None


# JupyterLab ------------------------------------------------------------------------------------


@dataclass
class Lab:
    """A running JupyterLab: where it listens, its token, and its folders."""

    process: subprocess.Popen
    url: str
    token: str
    root_dir: Path
    runtime_dir: Path

    def api(self, path: str, method: str = "GET", body: dict | None = None) -> dict | None:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}api/{path}", data=data, method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
        return json.loads(text) if text else None

    def page_url(self, notebook: str) -> str:
        return f"{self.url}lab/tree/{notebook}?token={self.token}"


def _lab_settings(settings_dir: Path) -> None:
    """Save widget state with the notebook (so the test can prove no secret is in it), and no
    news or update checks (the machine has no network)."""
    files = {
        "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings": {"saveState": True},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false", "checkForUpdates": False},
    }
    for name, content in files.items():
        path = settings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


def start_lab(base: Path, env: dict[str, str], timeout_s: float = 90, meanwhile=None) -> Lab:
    """Start JupyterLab on 127.0.0.1 (a free port, a token, no browser) in ``base``; run
    ``meanwhile()`` (if given) while it starts."""
    import secrets

    token = secrets.token_hex(16)
    root, runtime = base / "notebooks", base / "runtime"
    for path in (root, runtime, base / "config", base / "settings", base / "workspaces"):
        path.mkdir(parents=True, exist_ok=True)
    _lab_settings(base / "settings")
    env = dict(env, JUPYTER_RUNTIME_DIR=str(runtime), JUPYTER_CONFIG_DIR=str(base / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"))
    log = open(base / "jupyterlab.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         "--ServerApp.port=0", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.extension_manager=readonly",
         "--ServerApp.terminals_enabled=False", "--allow-root"],
        env=env, cwd=str(base), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    lab = None
    try:
        if meanwhile is not None:
            meanwhile()
        lab = _wait_for_lab(process, runtime, token, root, timeout_s)
        return lab
    finally:
        if lab is None:
            stop_lab_process(process, runtime)


def _wait_for_lab(process, runtime: Path, token: str, root: Path, timeout_s: float) -> Lab:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}")
        for info_file in runtime.glob(f"jpserver-{process.pid}.json"):
            info = json.loads(info_file.read_text() or "{}")
            if not info.get("url"):
                continue
            lab = Lab(process, info["url"], token, root, runtime)
            try:
                lab.api("status")
                return lab
            except (urllib.error.URLError, ConnectionError):
                pass
        time.sleep(0.3)
    raise TimeoutError(f"JupyterLab did not answer within {timeout_s} s")


def stop_lab(lab: Lab) -> None:
    """Shut JupyterLab down (its kernels with it), then make sure nothing of it is left."""
    try:
        lab.api("shutdown", method="POST")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass
    stop_lab_process(lab.process, lab.runtime_dir)


def stop_lab_process(process: subprocess.Popen, runtime: Path) -> None:
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    # Kernels run in sessions of their own; any still alive names our runtime folder.
    for pid in _pids_mentioning(str(runtime)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _pids_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found
