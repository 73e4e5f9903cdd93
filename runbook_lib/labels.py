"""The marks the runbook puts on everything it creates, and the test for them.

AWS resources carry tags and Kubernetes objects carry labels that say "created by this runbook
for this deployment". Cleanup and the inventory find resources by these marks, and refuse to
touch a resource that lacks them, even when its name matches.
"""

from __future__ import annotations

MANAGED_BY = "dbos-runbook"

# AWS tag keys (the same two on every resource the runbook creates).
TAG_MANAGED_BY = "runbook.dbos.dev/managed-by"
TAG_DEPLOYMENT = "runbook.dbos.dev/deployment"

# Kubernetes label keys.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_DEPLOYMENT = "runbook.dbos.dev/deployment"


def aws_tags(deployment: str) -> dict[str, str]:
    """The tags for an AWS resource created for ``deployment``, as a plain mapping."""
    return {TAG_MANAGED_BY: MANAGED_BY, TAG_DEPLOYMENT: deployment}


def aws_tag_list(deployment: str) -> list[dict[str, str]]:
    """The same tags in the ``[{"Key": …, "Value": …}]`` form most AWS APIs take."""
    return [{"Key": k, "Value": v} for k, v in aws_tags(deployment).items()]


def is_ours_aws(tags: dict[str, str] | list[dict[str, str]] | None, deployment: str) -> bool:
    """True when AWS ``tags`` (either form) mark a resource as created for ``deployment``."""
    if tags is None:
        return False
    if isinstance(tags, list):
        tags = {t.get("Key", t.get("key")): t.get("Value", t.get("value")) for t in tags}
    return tags.get(TAG_MANAGED_BY) == MANAGED_BY and tags.get(TAG_DEPLOYMENT) == deployment


def kube_labels(deployment: str) -> dict[str, str]:
    """The labels for a Kubernetes object created for ``deployment``."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_DEPLOYMENT: deployment}


def is_ours_kube(labels: dict[str, str] | None, deployment: str) -> bool:
    """True when Kubernetes ``labels`` mark an object as created for ``deployment``."""
    labels = labels or {}
    return labels.get(LABEL_MANAGED_BY) == MANAGED_BY and labels.get(LABEL_DEPLOYMENT) == deployment


def kube_selector(deployment: str) -> str:
    """A label selector that matches exactly the objects created for ``deployment``."""
    return ",".join(f"{k}={v}" for k, v in kube_labels(deployment).items())
