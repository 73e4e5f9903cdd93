"""Running the sandbox API server on a background thread, for synchronous code and tests.

``ServerThread`` starts a :class:`KubeAPIServer` on its own event loop in a daemon thread and
stops it (watches, streams, listener, loop) on exit, even when the body raised. The conformance
suite uses it, and so can any test or notebook helper that is not itself async.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .server import KubeAPIServer

T = TypeVar("T")


class ServerThread:
    """``with ServerThread() as server: ...`` — ``server.url`` is live inside the block."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.server = KubeAPIServer(host, port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kubeapi",
                                        daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> KubeAPIServer:
        self._thread.start()
        self.run(self.server.start())
        return self.server

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def call(self, function: Callable[[], T], timeout: float = 10.0) -> T:
        """Run a plain function on the server's loop (to touch hooks or state safely)."""
        async def wrapper() -> T:
            return function()

        return self.run(wrapper(), timeout)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.run(self.server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> KubeAPIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
