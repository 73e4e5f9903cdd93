"""The eks target's real command-line tools, eksctl, helm and docker, run through ``sh``.

:class:`Eksctl`, :class:`Helm` and :class:`Docker` implement the interfaces in
:mod:`runbook_lib.tools`; :func:`runbook_lib.target.connect` wires them for the eks target (the
sandbox has stand-ins). Each class takes the executable's name or path, so a test can point it
at a recording script, and builds the command lines the walkthrough uses.

Rules every command here keeps: no secret on a command line (the registry password goes to
``docker login`` on standard input); a failure becomes :class:`~runbook_lib.errors.TargetError`
carrying the tool's own standard error, scrubbed of the secrets this run knows
(:mod:`runbook_lib.redact`) and of anything shaped like a token; and commands that wait (eksctl
create, helm --wait, docker build) relay their progress lines to the log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import sh
import yaml

from runbook_lib import redact
from runbook_lib.aws import quiet_loggers
from runbook_lib.eksctl import load as load_cluster_config
from runbook_lib.errors import TargetError

log = logging.getLogger("runbook_lib.cli_tools")

_MASK = "[redacted]"
_TOKEN_PATTERNS = (
    # key=value and key: value pairs whose key names a secret.
    re.compile(
        r"(?i)((?:password|passwd|secret|token|authorization|api[_-]?key)[\"']?\s*[:=]\s*"
        r"[\"']?)((?:(?:bearer|basic)\s+)?[^\s\"',}]+)"
    ),
    # Bearer and Basic credentials.
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)([A-Za-z0-9._~+/=-]{8,})"),
    # JSON web tokens.
    re.compile(r"()(eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)"),
)
# A long run of base64-ish characters is likely a token; pure hex (digests, ids) is not.
_LONG_RUN = re.compile(r"[A-Za-z0-9+/=_-]{40,}")
_HEX = re.compile(r"^[0-9a-f]+$")


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secrets, registered secrets and token-shaped strings masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _MASK)
    text = redact.scrub(text)
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + _MASK, text)
    return _LONG_RUN.sub(lambda m: m.group(0) if _HEX.match(m.group(0)) else _MASK, text)


class _Tool:
    """Runs one executable with captured output and the error rules above."""

    name = ""
    default_executable = ""

    def __init__(self, executable: str | os.PathLike | None = None, env: dict | None = None):
        self.executable = str(executable or self.default_executable)
        self.env = env

    def _command(self) -> sh.Command:
        path = shutil.which(self.executable)
        if path is None:
            raise TargetError(
                f"{self.name}: {self.executable!r} is not installed or not on PATH (the eks "
                "target runs the real tool)"
            )
        return sh.Command(path)

    def _run(
        self,
        *args: str,
        stdin: str | None = None,
        secrets: Iterable[str] = (),
        timeout_s: float = 600,
        relay: int | None = None,
        ok_codes: Iterable[int] = (0,),
    ) -> tuple[int, str, str]:
        """Run the tool; return ``(exit code, stdout, stderr)`` or raise TargetError.

        ``relay`` is a log level at which each output line is passed on as it comes (for
        commands that take minutes), or None to keep the output quiet.
        """
        secrets = [s for s in secrets if s]
        shown = scrub(" ".join([self.name, *args]), secrets)
        log.info("running: %s", shown)
        out: list[str] = []
        err: list[str] = []

        def on_err(line: str) -> None:
            err.append(line)
            if relay is not None and line.strip():
                log.log(relay, "%s: %s", self.name, scrub(line.rstrip(), secrets))

        def on_out(line: str) -> None:
            out.append(line)
            if relay is not None and line.strip():
                log.log(relay, "%s: %s", self.name, scrub(line.rstrip(), secrets))

        options = {
            "_in": stdin,
            "_out": on_out,
            "_err": on_err,
            "_tty_out": False,
            "_timeout": timeout_s,
            "_ok_code": list(ok_codes),
            "_return_cmd": True,
        }
        if self.env is not None:
            options["_env"] = self.env
        command = self._command()
        try:
            # sh logs every chunk of standard input and output at DEBUG, a password included.
            with quiet_loggers("sh"):
                process = command(*args, **options)
            code = process.exit_code
        except sh.ErrorReturnCode as exc:
            code = exc.exit_code
            message = scrub("".join(err).strip() or "".join(out).strip(), secrets)
            raise TargetError(
                f"{shown} failed (exit {code}): {_tail(message) or 'no output'}"
            ) from None
        except sh.TimeoutException:
            raise TargetError(f"{shown} did not finish within {timeout_s:g} s") from None
        return code, "".join(out), "".join(err)

    def _version(self, *args: str) -> str:
        _, out, err = self._run(*args, timeout_s=60)
        return (out.strip() or err.strip()).splitlines()[0] if (out or err).strip() else ""


def _tail(text: str, lines: int = 20) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept)


# --- eksctl -------------------------------------------------------------------------------------


class Eksctl(_Tool):
    """eksctl: create the cluster from a ClusterConfig file, write a kubeconfig, delete it."""

    name = "eksctl"
    default_executable = "eksctl"

    def __init__(self, executable=None, env=None, *, timeout_s: float = 3600):
        super().__init__(executable, env)
        self.timeout_s = timeout_s

    def version(self) -> str:
        return self._version("version")

    def create_cluster(self, config_file: Path, kubeconfig: Path) -> None:
        """``eksctl create cluster -f FILE --kubeconfig PATH``; on an existing cluster, only
        write the kubeconfig (eksctl itself would fail because its stack already exists)."""
        spec = load_cluster_config(Path(config_file))
        cluster, region = spec.name, spec.region
        if self.cluster_exists(cluster, region):
            log.info("cluster %s exists; writing its kubeconfig only", cluster)
            self.write_kubeconfig(cluster, region, kubeconfig)
            return
        Path(kubeconfig).parent.mkdir(parents=True, exist_ok=True)
        self._run(
            "create", "cluster",
            "-f", str(config_file),
            "--kubeconfig", str(kubeconfig),
            timeout_s=self.timeout_s,
            relay=logging.INFO,
        )

    def cluster_exists(self, cluster: str, region: str) -> bool:
        """``eksctl get cluster``: True when the cluster exists, False when it does not."""
        try:
            _, out, _ = self._run("get", "cluster", "--name", cluster, "--region", region,
                                  "-o", "json", timeout_s=120)
        except TargetError as exc:
            if _not_found(str(exc)):
                return False
            raise
        try:
            return bool(json.loads(out or "[]"))
        except json.JSONDecodeError:
            return bool(out.strip())

    def write_kubeconfig(self, cluster: str, region: str, kubeconfig: Path) -> None:
        """``eksctl utils write-kubeconfig --cluster C --region R --kubeconfig PATH``."""
        Path(kubeconfig).parent.mkdir(parents=True, exist_ok=True)
        self._run("utils", "write-kubeconfig", "--cluster", cluster, "--region", region,
                  "--kubeconfig", str(kubeconfig), timeout_s=120)

    def delete_cluster(self, cluster: str, region: str) -> None:
        """``eksctl delete cluster --name C --region R --wait``; nothing to do when absent."""
        try:
            self._run("delete", "cluster", "--name", cluster, "--region", region, "--wait",
                      timeout_s=self.timeout_s, relay=logging.INFO)
        except TargetError as exc:
            if _not_found(str(exc)):
                log.info("cluster %s is absent; nothing to delete", cluster)
                return
            raise


def _not_found(message: str) -> bool:
    return "ResourceNotFoundException" in message or "No cluster found" in message


# --- helm ---------------------------------------------------------------------------------------


class Helm(_Tool):
    """helm: add the chart's repository, install or upgrade a release, read its status."""

    name = "helm"
    default_executable = "helm"

    def version(self) -> str:
        return self._version("version", "--short")

    def upgrade_install(
        self,
        release: str,
        chart: str,
        *,
        namespace: str,
        repo_url: str,
        kubeconfig: Path,
        version: str | None = None,
        values: dict | None = None,
        create_namespace: bool = True,
        timeout_s: int = 300,
    ) -> str:
        """``helm upgrade --install`` with ``--wait``; "unchanged" when already as wanted.

        A release counts as unchanged when it is deployed from the same chart version with the
        same values; then nothing is run, so a re-run adds no revision.
        """
        repo_name = chart.split("/", 1)[0]
        self._run("repo", "add", repo_name, repo_url, "--force-update", timeout_s=120)
        self._run("repo", "update", repo_name, timeout_s=300)

        before = self.release_status(release, namespace=namespace, kubeconfig=kubeconfig)
        if before == "deployed" and self._same(release, chart, namespace, kubeconfig, version,
                                               values or {}):
            log.info("helm release %s in %s is deployed as wanted", release, namespace)
            return "unchanged"

        with tempfile.TemporaryDirectory(prefix="runbook-helm-") as folder:
            values_file = Path(folder) / "values.yaml"
            fd = os.open(values_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                yaml.safe_dump(values or {}, handle)
            args = ["upgrade", "--install", release, chart, "--namespace", namespace]
            if create_namespace:
                args.append("--create-namespace")
            if version:
                args += ["--version", version]
            args += ["--values", str(values_file), "--wait", "--timeout", f"{int(timeout_s)}s",
                     "--kubeconfig", str(kubeconfig)]
            self._run(*args, timeout_s=timeout_s + 120, relay=logging.INFO)
        result = "installed" if before is None else "upgraded"
        log.info("helm release %s in %s %s", release, namespace, result)
        return result

    def _same(self, release, chart, namespace, kubeconfig, version, values: dict) -> bool:
        _, out, _ = self._run("list", "--namespace", namespace, "--filter", f"^{release}$",
                              "-o", "json", "--kubeconfig", str(kubeconfig), timeout_s=120)
        listed = json.loads(out or "[]")
        if not listed:
            return False
        chart_name = chart.split("/", 1)[-1]
        deployed = listed[0].get("chart", "")
        if not deployed.startswith(f"{chart_name}-"):
            return False
        if version and deployed != f"{chart_name}-{version.lstrip('v')}":
            return False
        _, out, _ = self._run("get", "values", release, "--namespace", namespace, "-o", "json",
                              "--kubeconfig", str(kubeconfig), timeout_s=120)
        return (json.loads(out or "null") or {}) == values

    def release_status(self, release: str, *, namespace: str, kubeconfig: Path) -> str | None:
        """``helm status -o json``: the release's status, or None when it is not installed."""
        try:
            _, out, _ = self._run("status", release, "--namespace", namespace, "-o", "json",
                                  "--kubeconfig", str(kubeconfig), timeout_s=120)
        except TargetError as exc:
            if "not found" in str(exc):
                return None
            raise
        return json.loads(out).get("info", {}).get("status")

    def uninstall(self, release: str, *, namespace: str, kubeconfig: Path) -> bool:
        """``helm uninstall --wait``; False when there was nothing to uninstall."""
        try:
            self._run("uninstall", release, "--namespace", namespace, "--wait",
                      "--kubeconfig", str(kubeconfig), timeout_s=600)
        except TargetError as exc:
            if "not found" in str(exc):
                return False
            raise
        return True


# --- docker -------------------------------------------------------------------------------------


_DIGEST = re.compile(r"digest:\s*(sha256:[0-9a-f]{64})")


class Docker(_Tool):
    """docker: log in to ECR, build for the nodes' platform, push and report the digest."""

    name = "docker"
    default_executable = "docker"

    def version(self) -> str:
        return self._version("version", "--format", "{{.Client.Version}}")

    def login(self, registry: str, username: str, password: str) -> None:
        """``docker login --username U --password-stdin REGISTRY``, the password on stdin."""
        redact.register(password)
        self._run("login", "--username", username, "--password-stdin", registry,
                  stdin=password, secrets=[password], timeout_s=120)
        log.info("logged in to %s as %s", registry, username)

    def build(
        self, context: Path, dockerfile: Path, image_ref: str, *, platform: str = "linux/amd64"
    ) -> None:
        """``docker build --platform P -t REF -f DOCKERFILE CONTEXT``."""
        self._run("build", "--platform", platform, "-t", image_ref, "-f", str(dockerfile),
                  str(context), timeout_s=3600, relay=logging.DEBUG)

    def push(self, image_ref: str) -> str:
        """``docker push REF``; the digest from its output, else from ``docker inspect``."""
        _, out, err = self._run("push", image_ref, timeout_s=3600, relay=logging.DEBUG)
        found = _DIGEST.findall(out + err)
        if found:
            return found[-1]
        repository = _repository_of(image_ref)
        _, out, _ = self._run("inspect", "--format", "{{json .RepoDigests}}", image_ref,
                              timeout_s=60)
        digests = json.loads(out.strip() or "[]") or []
        for entry in digests:
            name, _, digest = entry.partition("@")
            if name == repository and digest.startswith("sha256:"):
                return digest
        if digests and "@" in digests[0]:
            return digests[0].split("@", 1)[1]
        raise TargetError(f"docker push {image_ref} reported no digest")


def _repository_of(image_ref: str) -> str:
    """``registry/name`` of ``registry/name:tag`` or ``registry/name@sha256:…``."""
    ref = image_ref.split("@", 1)[0]
    slash, colon = ref.rfind("/"), ref.rfind(":")
    return ref[:colon] if colon > slash else ref
