"""Writing an ordinary kubeconfig that points kubectl and the Python client at a server.

The sandbox API server speaks plain HTTP on 127.0.0.1 and accepts any bearer token; the file
written here names it like any cluster (a cluster, a token user, a context), so code under test
loads it with ``kubernetes.config.load_kube_config`` or ``KUBECONFIG`` and never learns it
talks to a sandbox. The file is created with mode 0600, as kubeconfigs holding a token should
be.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

SANDBOX_TOKEN = "sandbox-token-not-a-secret"


def write_kubeconfig(path: str | os.PathLike[str], server_url: str, *, context: str = "sandbox",
                     cluster: str = "sandbox", namespace: str | None = None) -> None:
    """Write a kubeconfig at ``path`` whose current context reaches ``server_url``."""
    context_body: dict[str, str] = {"cluster": cluster, "user": f"{cluster}-user"}
    if namespace:
        context_body["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server_url}}],
        "users": [{"name": f"{cluster}-user", "user": {"token": SANDBOX_TOKEN}}],
        "contexts": [{"name": context, "context": context_body}],
        "current-context": context,
        "preferences": {},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    os.chmod(target, 0o600)
