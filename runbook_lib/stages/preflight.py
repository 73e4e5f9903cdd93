"""Preflight: check that the chosen target has everything the runbook needs.

On the eks target: AWS credentials (through STS), eksctl, helm and docker; on the sandbox: the
sandbox's parts, all on this machine. Also validates the parameters (already done when the stage
began) and that every secret source resolves. Every problem is collected, then reported in one
error, so an operator fixes them all in one go.
"""

from __future__ import annotations

import logging

from runbook_lib import aws
from runbook_lib.errors import TargetError
from runbook_lib.outcome import Report
from runbook_lib.secrets_resolver import check_all

log = logging.getLogger("runbook_lib.stages.preflight")


def caller_identity(stage) -> dict:
    """Who the runbook acts as on AWS (account and ARN; no secrets)."""
    target = stage.target
    identity = aws.caller_identity(target.aws_session, target.aws_endpoint_url)
    return Report(account=identity["Account"], arn=identity["Arn"])


def check(stage) -> dict:
    """Run every check; raise one TargetError listing all that failed; return what was found."""
    problems: list[str] = []
    found: dict[str, str] = {}

    try:
        identity = caller_identity(stage)
        found["aws account"] = identity["account"]
        found["aws identity"] = identity["arn"]
    except Exception as exc:  # noqa: BLE001 - any failure here means no usable credentials
        problems.append(f"AWS credentials: {type(exc).__name__}: {exc}")

    target = stage.target
    for tool in (target.cluster_tool, target.helm, target.images):
        try:
            found[tool.name] = tool.version()
        except Exception as exc:  # noqa: BLE001 - a missing tool is reported, not raised
            problems.append(f"{tool.name}: not usable ({exc})")

    problems += check_all(target)

    for key, value in found.items():
        print(f"{key:<40} {value}")
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise TargetError(f"{len(problems)} preflight problem(s):\n{lines}")
    print("Preflight passed: parameters valid, secret sources resolve, tools present.")
    return Report(found)
