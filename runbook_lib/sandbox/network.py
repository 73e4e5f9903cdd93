"""The sandbox's cluster DNS and NAT: names that pods use, mapped to addresses on this machine.

In a real cluster a pod reaches ``dbos-app.dbos.svc.cluster.local:8080`` through cluster DNS
and a Service, and an RDS endpoint through the VPC. In the sandbox every pod is a local process,
so the kubelet rewrites what a pod is given (environment values, command and args) before it
starts it: every ``host:port`` whose name the sandbox knows becomes ``127.0.0.1:PORT``.

Who fills the map: the RDS stand-in (``runbook_lib.sandbox.rds``) adds one entry per database
instance; the controllers register a resolver for Service names. Who reads it: the kubelet, via
:meth:`Network.rewrite` and :meth:`Network.resolve`. Everything here is thread-safe: moto calls
in from its request threads while the controllers run on an event loop.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable

log = logging.getLogger("runbook_lib.sandbox.network")

Resolver = Callable[[str, int], "tuple[str, int] | None"]

# A DNS name (or an IPv4 address) followed by a port. The look-behind keeps a longer name from
# matching by its tail ("xdb.example.com" must not match "db.example.com"); the look-ahead
# keeps "5432" from matching the start of "54321".
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
_HOST_PORT = re.compile(
    r"(?<![A-Za-z0-9_.\-])"
    rf"(?P<host>{_LABEL}(?:\.{_LABEL})*)"
    r":(?P<port>[0-9]{1,5})"
    r"(?![0-9A-Za-z_])"
)

# Where a URL's authority starts, and the characters that end it.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_AUTHORITY_END = re.compile(r"[/?#\s\"'<>`]")


class Network:
    """Name → local address map with pluggable resolvers, and the text rewrite built on it."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._static: dict[tuple[str, int], tuple[str, int]] = {}
        self._resolvers: list[Resolver] = []

    def add(self, host: str, port: int, local_host: str, local_port: int) -> None:
        """Serve ``host:port`` from ``local_host:local_port``; replaces an earlier entry."""
        with self._lock:
            self._static[(_norm(host), int(port))] = (local_host, int(local_port))
        log.info("network: %s:%d is served at %s:%d", host, port, local_host, local_port)

    def remove(self, host: str, port: int) -> None:
        """Forget ``host:port``; no error when it was not there."""
        with self._lock:
            gone = self._static.pop((_norm(host), int(port)), None)
        if gone is not None:
            log.info("network: %s:%d removed", host, port)

    def add_resolver(self, fn: Resolver) -> None:
        """Ask ``fn(host, port)`` for names the static map does not know (e.g. Service names)."""
        with self._lock:
            self._resolvers.append(fn)

    def entries(self) -> dict[str, str]:
        """The static map as ``{"host:port": "local:port"}``, for the state file and the record."""
        with self._lock:
            return {f"{h}:{p}": f"{lh}:{lp}" for (h, p), (lh, lp) in sorted(self._static.items())}

    def resolve(self, host: str, port: int) -> tuple[str, int] | None:
        """The local address serving ``host:port``, or None when the sandbox does not know it."""
        key = (_norm(host), int(port))
        with self._lock:
            hit = self._static.get(key)
            resolvers = list(self._resolvers)
        if hit is not None:
            return hit
        for fn in resolvers:
            try:
                found = fn(key[0], key[1])
            except Exception:  # a broken resolver must not break every pod start
                log.exception("network: resolver %r failed for %s:%d", fn, key[0], key[1])
                continue
            if found is not None:
                return (found[0], int(found[1]))
        return None

    def rewrite(self, text: str) -> str:
        """Replace every resolvable ``host:port`` in ``text`` with its local address.

        Everything else stays byte-for-byte as it was. The user-information part of a URL
        (``scheme://user:password@``) is never touched, and neither is a ``name:number`` right
        before an ``@`` (that is a user and password, not a host and port).
        """
        if not text or ":" not in text:
            return text
        protected = _userinfo_spans(text)
        out: list[str] = []
        last = 0
        for m in _HOST_PORT.finditer(text):
            if _inside(m.start(), protected) or text.startswith("@", m.end()):
                continue
            port = int(m.group("port"))
            if port > 65535:
                continue
            local = self.resolve(m.group("host"), port)
            if local is None:
                continue
            out.append(text[last : m.start()])
            out.append(f"{local[0]}:{local[1]}")
            last = m.end()
        if not out:
            return text
        out.append(text[last:])
        return "".join(out)


def _norm(host: str) -> str:
    # DNS names are case-insensitive, and a fully qualified name may end with a dot.
    return host.strip().rstrip(".").lower()


def _userinfo_spans(text: str) -> list[tuple[int, int]]:
    """Spans ``[start, end)`` of ``user:password`` parts of URLs in ``text``."""
    spans = []
    for m in _SCHEME.finditer(text):
        start = m.end()
        end_m = _AUTHORITY_END.search(text, start)
        end = end_m.start() if end_m else len(text)
        at = text.rfind("@", start, end)
        if at != -1:
            spans.append((start, at))
    return spans


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= pos < end for start, end in spans)
