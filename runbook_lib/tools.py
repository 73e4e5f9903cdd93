"""The interfaces of the command-line tools the runbook drives: eksctl, helm and docker.

Stage code calls these interfaces only. On the eks target the implementations run the real
commands through ``sh`` (see ``runbook_lib.cli_tools``); on the sandbox target,
``runbook_lib.sandbox`` supplies stand-ins with the same methods. ``runbook_lib.target`` is the
one place that picks which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class ClusterTool(Protocol):
    """Creates and deletes the Kubernetes cluster (eksctl on the eks target)."""

    name: str

    def version(self) -> str:
        """The tool's version, for the preflight and the record."""

    def create_cluster(self, config_file: Path, kubeconfig: Path) -> None:
        """Create the cluster described by an eksctl ClusterConfig file; write its kubeconfig."""

    def write_kubeconfig(self, cluster: str, region: str, kubeconfig: Path) -> None:
        """Write a kubeconfig for an existing cluster."""

    def delete_cluster(self, cluster: str, region: str) -> None:
        """Delete the cluster and what the tool created with it; wait until it is gone."""


class HelmTool(Protocol):
    """Installs cluster add-ons from charts (helm on the eks target)."""

    name: str

    def version(self) -> str:
        """The tool's version, for the preflight and the record."""

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
        """Install or upgrade a release; return "installed", "upgraded" or "unchanged"."""

    def release_status(self, release: str, *, namespace: str, kubeconfig: Path) -> str | None:
        """The release's status ("deployed", "failed", …), or None when it is not installed."""

    def uninstall(self, release: str, *, namespace: str, kubeconfig: Path) -> bool:
        """Uninstall a release; False when there was nothing to uninstall."""


class ImageTool(Protocol):
    """Builds and pushes container images (docker on the eks target)."""

    name: str

    def version(self) -> str:
        """The tool's version, for the preflight and the record."""

    def login(self, registry: str, username: str, password: str) -> None:
        """Log in to a registry. The password goes on standard input, never on a command line."""

    def build(
        self, context: Path, dockerfile: Path, image_ref: str, *, platform: str = "linux/amd64"
    ) -> None:
        """Build an image from a Dockerfile and tag it ``image_ref``."""

    def push(self, image_ref: str) -> str:
        """Push ``image_ref``; return its digest ("sha256:…")."""
