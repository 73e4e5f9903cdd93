"""The sandbox's controller manager and kubelet: the cluster behind our local API server.

The sandbox daemon uses :class:`ControllerManager`; nothing else in the library imports this
package. See :mod:`.manager` for the lifecycle, :mod:`.kubelet` and :mod:`.pod_worker` for how
pods run as local processes, and the controller modules for what each one supports.
"""

from runbook_lib.sandbox.controllers.kubelet import NODE_NAME
from runbook_lib.sandbox.controllers.manager import ControllerManager
from runbook_lib.sandbox.controllers.util import PORTS_ANNOTATION

__all__ = ["NODE_NAME", "PORTS_ANNOTATION", "ControllerManager"]
