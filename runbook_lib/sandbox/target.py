"""The sandbox's side of :func:`runbook_lib.target.connect`.

Starts the sandbox if it is not running, and returns a Target whose AWS session points at the
sandbox's moto server (with fake credentials, so no call can reach real AWS) and whose tools are
the sandbox's stand-ins for eksctl, helm and docker.
"""

from __future__ import annotations

from pathlib import Path

from runbook_lib.parameters import Parameters
from runbook_lib.target import Target, TargetRun


class SandboxRun(TargetRun):
    """A chain run starts the sandbox; it stops it only after a success, and only if it
    started it, so a failed run can be inspected and resumed."""

    def __init__(self):
        from runbook_lib import sandbox

        self.started_here = sandbox.status() is None
        info = sandbox.up()
        super().__init__(notes=[f"sandbox: {line}" for line in info.describe()])

    def finished(self, succeeded: bool) -> None:
        from runbook_lib import sandbox

        if not succeeded:
            print("The sandbox is left running for inspection and resume "
                  "(python -m runbook_lib sandbox down stops it).")
        elif self.started_here:
            sandbox.down()


def connect_sandbox(params: Parameters, state_dir: Path) -> Target:
    import boto3

    from runbook_lib import sandbox
    from runbook_lib.sandbox.eksctl_standin import SandboxEksctl
    from runbook_lib.sandbox.standins import SandboxDocker, SandboxHelm

    info = sandbox.up()
    # Explicit fake credentials: nothing in this session can sign a request real AWS accepts.
    session = boto3.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
        region_name=params.aws.region,
    )
    endpoint = info.aws_endpoint_url
    return Target(
        name="sandbox",
        params=params,
        state_dir=state_dir,
        aws_session=session,
        aws_endpoint_url=endpoint,
        cluster_tool=SandboxEksctl(session, endpoint, info.kube_url),
        helm=SandboxHelm(info),
        images=SandboxDocker(info),
        notes=[f"sandbox: {line}" for line in info.describe()],
        db_sslmode="disable",
    )
