"""What to check when a stage fails: short hints in the spirit of an operations handbook.

:func:`install` is called by ``begin()`` in every stage notebook. It sets an IPython custom
exception handler: the traceback is shown as usual (scrubbed by :mod:`runbook_lib.redact`, and
still an error for papermill and the chain runner), followed by a few lines on what to check for
this stage and this kind of error, and how to carry on. The hints are fixed text plus names the
error already carries (a resource, a stage): never an exception's message, so never a secret.
"""

from __future__ import annotations

import logging
import os

from runbook_lib.errors import ParameterError, Refusal, RunbookError, TargetError, WaitTimeout

log = logging.getLogger("runbook_lib.hints")

# Per stage and kind of error: what to look at first. The kind's own ``hint`` comes after.
_STAGE_HINTS: dict[str, dict[str, str]] = {
    "preflight": {
        "TargetError": "Each line of the message is one missing piece: credentials (`aws sts "
                       "get-caller-identity`), a tool on PATH, or a secret source that does not "
                       "resolve (is the environment variable set in this kernel?).",
    },
    "infrastructure": {
        "WaitTimeout": "EKS and RDS take 10-20 minutes on AWS. Look at the CloudFormation "
                       "stacks eksctl made (`eksctl-<cluster>-cluster`, `-nodegroup-…`) and at "
                       "the RDS instance's events before raising `timeouts.cluster` or "
                       "`timeouts.rds`.",
        "TargetError": "Check the AWS service quotas (VPCs, Elastic IPs, EKS clusters) and that "
                       "the identity may create EKS, EC2, RDS and ECR resources. For the add-ons, "
                       "`helm list -A` and the pods in kube-system and keda.",
    },
    "secrets": {
        "WaitTimeout": "Is the Sealed Secrets controller running (`kubectl -n kube-system get "
                       "pods`)? Its log says why a SealedSecret was not unsealed (often a scope "
                       "or namespace that differs from the one sealed for).",
        "TargetError": "The controller's certificate comes through the API's service proxy: "
                       "check the `sealed-secrets` Service in kube-system.",
    },
    "migration": {
        "WaitTimeout": "`kubectl -n <namespace> logs job/<migrate job>`: a database that is not "
                       "reachable from the cluster (security group, subnet group) or a wrong "
                       "admin password shows there.",
        "TargetError": "Read the Job's log above. `dbos migrate` needs the admin URL from the "
                       "`postgres-admin` Secret; re-running the migration is safe.",
    },
    "deployment": {
        "WaitTimeout": "`kubectl -n <namespace> describe pods -l app=<app>`: image pull errors, "
                       "failing readiness probes on /healthz, or a database URL the restricted "
                       "role cannot use. The pods' last log lines are the quickest clue.",
        "TargetError": "Check the rendered manifests in the record against the cluster's "
                       "version; `kubectl apply --dry-run=server` shows the API's objection.",
    },
    "autoscaling": {
        "WaitTimeout": "Is KEDA's operator ready, and does the ScaledObject report Ready? "
                       "`kubectl get hpa -n <namespace>` shows the replicas KEDA asks for; the "
                       "app's /metrics/<queue> endpoint must answer through the Service.",
    },
    "upgrade": {
        "WaitTimeout": "The old version's workflows must finish before it is scaled away: look "
                       "at the PENDING workflows of that version and at its pods' logs.",
    },
    "cleanup": {
        "WaitTimeout": "Deletions can be slow on AWS (RDS final snapshot, the cluster's "
                       "CloudFormation stacks). Run the cleanup again: it picks up where it "
                       "stopped.",
        "Refusal": "Only resources tagged or labelled by this runbook for this deployment are "
                   "deleted; the ones named here were not, and are left alone on purpose.",
    },
}

_UNEXPECTED = ("This is not one of the runbook's own errors: likely a bug or a missing piece of "
               "the environment. The traceback above names the line; nothing after this cell "
               "ran.")


def kind_of(exc: BaseException) -> str:
    """The error's kind as the hints know it: the runbook's class names, else "unexpected"."""
    for cls in type(exc).__mro__:
        if cls.__name__ == "GateNotAnswered" or cls in (ParameterError, WaitTimeout,
                                                        TargetError, Refusal):
            return cls.__name__
    return "unexpected"


def hint_for(stage: str, exc: BaseException) -> list[str]:
    """The hint lines for ``exc`` raised in ``stage`` (no secret: nothing of its message)."""
    kind = kind_of(exc)
    lines: list[str] = []
    if isinstance(exc, WaitTimeout):
        lines.append(f"Waited {exc.limit_s:g} s for {exc.resource}.")
    # A gate's own hint says exactly what to do; other kinds get the stage's advice first.
    specific = None if kind == "GateNotAnswered" else _STAGE_HINTS.get(stage, {}).get(kind)
    if specific:
        lines.append(specific)
    if isinstance(exc, RunbookError) and exc.hint:
        lines.append(exc.hint)
    elif not isinstance(exc, RunbookError):
        lines.append(_UNEXPECTED)
    lines.append(_how_to_continue(stage, kind))
    return lines


def _how_to_continue(stage: str, kind: str) -> str:
    record = os.environ.get("RUNBOOK_RECORD_DIR")
    if record:
        return f"Then resume the chain: python -m runbook_lib resume {record}"
    if kind == "ParameterError":
        return "Then run the notebook again from the top (the form, or the parameters cell)."
    return "Then run this notebook again from the top: every step finds what already exists."


def render(stage: str, exc: BaseException) -> str:
    """The hint as text: a heading line and one bullet per hint."""
    from runbook_lib.stage import STAGES

    number, title = STAGES.get(stage, ("??", stage))
    head = f"What to check (stage {number} {title}, {kind_of(exc)}):"
    return "\n".join([head] + [f"  - {line}" for line in hint_for(stage, exc)])


def install(stage: str) -> None:
    """Show a hint after every error raised in this kernel's cells (IPython only)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def handler(shell, etype, value, tb, tb_offset=None):
        # The usual traceback first: it is what papermill and the chain runner report.
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        try:
            print(render(stage, value), flush=True)
        except Exception:  # a hint must never hide the original error
            log.debug("no hint for %s", etype.__name__, exc_info=True)

    shell.set_custom_exc((Exception,), handler)
