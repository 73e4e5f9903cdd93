"""What the sandbox daemon hands to the parts it runs.

The daemon builds one :class:`SandboxContext` and passes it to the controller manager (which
hands it on to the kubelet): where the sandbox keeps its files, how to reach the Kubernetes API,
the network map that turns cluster names into local addresses, the image registry that says
what an image runs, and the ``PATH`` that pod processes get.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runbook_lib.sandbox.images import ImageResolver
from runbook_lib.sandbox.network import Network


@dataclass
class SandboxContext:
    """The shared pieces of one running sandbox."""

    state_dir: Path
    api_url: str
    kubeconfig: Path
    network: Network
    images: ImageResolver
    bin_path: str
