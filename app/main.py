"""Entry point of the sample DBOS app: ``python main.py`` (the app image's ENTRYPOINT).

Reads the configuration from the environment (``settings.py``), binds 0.0.0.0:PORT,
then serves the FastAPI app (``api.py``) with uvicorn while DBOS starts in the background
(``lifecycle.py``). The first SIGTERM or SIGINT starts the drain instead of uvicorn's
immediate shutdown; the server exits once the drain has handed back unfinished work. A
second signal falls through to uvicorn's own handling.

Exit codes: 0 after a drain, 1 when DBOS fails to start or the port cannot be bound, 2
for a configuration error (one line on stderr, never a URL or key).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys

from settings import ConfigError, Settings, check_conductor_support, load_settings

log = logging.getLogger("dbos_app.main")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def bind_socket(port: int) -> socket.socket:
    """Bind the listening socket before DBOS starts, so a taken port fails fast."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, sock: socket.socket) -> int:
    """Run the HTTP server until the drain (or a failed launch) ends it; the exit code."""
    import uvicorn
    from api import create_api
    from lifecycle import AppRuntime

    runtime = AppRuntime(settings)

    class DrainingServer(uvicorn.Server):
        """uvicorn, except that the first SIGTERM/SIGINT drains DBOS before exiting."""

        def handle_exit(self, sig: int, frame) -> None:
            if sig in (signal.SIGTERM, signal.SIGINT) and not runtime.drain_requested:
                runtime.begin_drain()
                return
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        create_api(runtime),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = DrainingServer(config)

    def finish() -> None:
        server.should_exit = True

    runtime.on_finished = finish
    server.run(sockets=[sock])
    return runtime.exit_code


def main() -> int:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    try:
        settings = load_settings(os.environ)
        check_conductor_support(settings)
    except ConfigError as exc:
        print(f"dbos-app: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind_socket(settings.port)
    except OSError as exc:
        print(f"dbos-app: cannot listen on port {settings.port}: {exc.strerror}", file=sys.stderr)
        return 1
    if settings.conductor_url and not settings.conductor_key:
        log.warning("DBOS_CONDUCTOR_URL is set without DBOS_CONDUCTOR_KEY: Conductor is off")
    log.info("listening on 0.0.0.0:%d; starting DBOS", settings.port)
    return serve(settings, sock)


if __name__ == "__main__":
    exit_code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit, not sys.exit: a workflow handed back while sleeping still occupies a DBOS
    # executor thread, and the interpreter would join that thread before exiting.
    os._exit(exit_code)
