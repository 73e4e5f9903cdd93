"""The target a run acts on, and the one place that picks its tools.

A :class:`Target` bundles what stage code needs to reach the platform: an AWS session and the
endpoint its clients use, the kubeconfig, and the command-line tools (cluster, helm, images)
behind the interfaces in :mod:`runbook_lib.tools`. :func:`connect` is the only function that
looks at ``params.target``: for ``eks`` it wires the real tools and real AWS; for ``sandbox`` it
hands over to :mod:`runbook_lib.sandbox`, which supplies local stand-ins behind the same
interfaces. Stage code never branches on the target.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runbook_lib.parameters import PROJECT_ROOT, Parameters
from runbook_lib.tools import ClusterTool, HelmTool, ImageTool


@dataclass
class Target:
    """Everything stage code needs to act on one target."""

    name: str
    params: Parameters
    state_dir: Path
    aws_session: object
    aws_endpoint_url: str | None
    cluster_tool: ClusterTool
    helm: HelmTool
    images: ImageTool
    notes: list[str] = field(default_factory=list)
    # How pods connect to the database: RDS takes TLS; the sandbox's PostgreSQL has none.
    db_sslmode: str = "require"

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig the cluster stage writes and every later stage uses."""
        return self.state_dir / "kubeconfig"

    def client(self, service: str):
        """A boto3 client for ``service`` on this target's endpoint."""
        return self.aws_session.client(service, endpoint_url=self.aws_endpoint_url)

    def describe(self) -> list[str]:
        """Human lines for the record: what this target is and how it is reached."""
        endpoint = self.aws_endpoint_url or "AWS public endpoints"
        lines = [
            f"target: {self.name}",
            f"AWS: region {self.params.aws.region}, {endpoint}",
            f"tools: {self.cluster_tool.name}, {self.helm.name}, {self.images.name}",
        ]
        return lines + self.notes


@dataclass
class TargetRun:
    """What a chain run needs started on its target, and stopped after it (nothing on eks)."""

    notes: list[str] = field(default_factory=list)

    def finished(self, succeeded: bool) -> None:
        """Called once the run ends; ``succeeded`` is False when a stage failed."""


def start_run(params: Parameters) -> TargetRun:
    """Start what a run on ``params.target`` needs before its first kernel connects."""
    if params.target == "sandbox":
        from runbook_lib.sandbox.target import SandboxRun

        return SandboxRun()
    return TargetRun()


def state_dir_for(params: Parameters) -> Path:
    """Where a deployment keeps its kubeconfig and generated secrets (outside any record)."""
    root = Path(os.environ.get("RUNBOOK_STATE_DIR", PROJECT_ROOT / ".runbook"))
    path = root / f"{params.target}-{params.deployment_id}"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def connect(params: Parameters) -> Target:
    """The target named by ``params.target``, with its tools; starts nothing on AWS."""
    state_dir = state_dir_for(params)
    if params.target == "sandbox":
        from runbook_lib.sandbox.target import connect_sandbox

        return connect_sandbox(params, state_dir)

    import boto3

    from runbook_lib.cli_tools import Docker, Eksctl, Helm

    session = boto3.Session(region_name=params.aws.region, profile_name=params.aws.profile)
    return Target(
        name="eks",
        params=params,
        state_dir=state_dir,
        aws_session=session,
        aws_endpoint_url=None,
        cluster_tool=Eksctl(),
        helm=Helm(),
        images=Docker(),
    )
