"""Warm kernels for the chain runner: the next stage's kernel starts while this one runs.

A stage notebook's first cells import the library, boto3 and the Kubernetes client, which takes
seconds on a small machine, on top of the kernel's own start. The chain therefore starts the
next stage's kernel in the background and has it import those modules (silently, outside the
notebook's history: the notebook's cells and execution counts are unchanged), then hands the
running kernel to papermill. Anything that goes wrong here only costs the warm start: the chain
falls back to a cold kernel.
"""

from __future__ import annotations

import asyncio
import logging
import threading

log = logging.getLogger("runbook_lib.kernels")

WARM_IMPORTS = (
    "import runbook_lib.stage, runbook_lib.kube, runbook_lib.stages.common, boto3, "
    "kubernetes.client, kubernetes.config"
)


class WarmKernel:
    """A kernel started (and warmed) on a background thread."""

    def __init__(self, cwd: str, kernel_name: str = "python3"):
        self.cwd, self.kernel_name = cwd, kernel_name
        self.km = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="warm-kernel", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            asyncio.run(self._astart())
        except BaseException as exc:  # noqa: BLE001 - a failed warm-up means a cold start
            self.error = exc

    async def _astart(self) -> None:
        from jupyter_client.manager import AsyncKernelManager

        km = AsyncKernelManager(kernel_name=self.kernel_name)
        await km.start_kernel(cwd=self.cwd)
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            msg_id = kc.execute(WARM_IMPORTS, silent=True, store_history=False)
            while True:
                reply = await kc.get_shell_msg(timeout=120)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
        finally:
            kc.stop_channels()
        self.km = km

    def take(self, timeout_s: float = 120):
        """The started kernel's manager, or None (then papermill starts a kernel itself)."""
        self._thread.join(timeout_s)
        if self._thread.is_alive() or self.km is None:
            if self.error is not None:
                log.debug("warm kernel unavailable: %s", self.error)
            return None
        km, self.km = self.km, None
        return km

    def discard(self) -> None:
        """Shut the kernel down if nobody took it."""
        self._thread.join(30)
        if self.km is not None:
            shutdown(self.km)
            self.km = None


def shutdown(km) -> None:
    async def stop():
        if km.has_kernel:
            await km.shutdown_kernel(now=True)

    try:
        asyncio.run(stop())
    except Exception as exc:  # noqa: BLE001 - the kernel may be gone already
        log.debug("kernel shutdown: %s", exc)
