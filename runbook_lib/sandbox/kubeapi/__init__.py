"""The sandbox's own Kubernetes API server (in memory, on aiohttp) and its kubeconfig.

Stage code reaches it through an ordinary kubeconfig, like any cluster; the sandbox controllers
(kubelet, Deployment and Job controllers, Sealed Secrets, KEDA and the HPA) are HTTP clients of
it and install hooks for pod logs and the service proxy. Run it standalone with
``python -m runbook_lib.sandbox.kubeapi --port N --kubeconfig PATH``.

Public interface: :class:`KubeAPIServer`, :func:`write_kubeconfig`, and :class:`ServerThread`
for synchronous callers.
"""

from .kubeconfig import write_kubeconfig
from .server import KubeAPIServer
from .threaded import ServerThread

__all__ = ["KubeAPIServer", "ServerThread", "write_kubeconfig"]
