"""Run the sandbox Kubernetes API server standalone, for exploring with kubectl.

``python -m runbook_lib.sandbox.kubeapi --port 6443 --kubeconfig ./sandbox.kubeconfig`` serves
until interrupted (Ctrl-C or SIGTERM) and writes a kubeconfig pointing at it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from .kubeconfig import write_kubeconfig
from .server import KubeAPIServer


async def _serve(host: str, port: int, kubeconfig: str | None, namespace: str | None) -> None:
    server = KubeAPIServer(host, port)
    await server.start()
    if kubeconfig:
        write_kubeconfig(kubeconfig, server.url, namespace=namespace)
    print(f"sandbox Kubernetes API server on {server.url}", flush=True)
    if kubeconfig:
        print(f"kubeconfig written to {kubeconfig}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runbook_lib.sandbox.kubeapi",
                                     description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the server here")
    parser.add_argument("--namespace", help="default namespace of the kubeconfig's context")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args.host, args.port, args.kubeconfig, args.namespace))


if __name__ == "__main__":
    main()
