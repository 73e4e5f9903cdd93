"""Keeping secret values out of everything the runbook writes.

Every secret value the runbook resolves (and every value derived from one, such as a database
URL) is registered here. :func:`scrub` replaces any registered value, and its base64, URL-encoded
and JSON-escaped forms, with ``[redacted]``. The stage context installs scrubbing on the notebook
kernel's stdout, stderr, logging and tracebacks, so that a slip in one place does not reach the
record. This is the second line of defence: the first is never printing a value at all.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import threading
from urllib.parse import quote, quote_plus

MASK = "[redacted]"
_MIN_LENGTH = 6
_values: set[str] = set()
_lock = threading.Lock()


def _forms(value: str) -> set[str]:
    raw = value.encode()
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    forms.add(base64.b64encode(raw).decode())
    forms.add(base64.urlsafe_b64encode(raw).decode())
    # A value embedded in a longer base64 text shows up at one of three alignments; the middle
    # of each form is stable whatever surrounds it.
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        middle = encoded[4 * ((shift + 2) // 3) : -4] if len(encoded) > 12 else ""
        if len(middle) >= _MIN_LENGTH:
            forms.add(middle)
    return {f for f in forms if len(f) >= _MIN_LENGTH}


def register(value: str | bytes | None) -> None:
    """Remember a secret value so that :func:`scrub` hides it from now on."""
    if value is None:
        return
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    if len(value) < _MIN_LENGTH:
        return
    with _lock:
        _values.update(_forms(value))


def registered() -> int:
    """How many forms are registered (for tests and the record; never the values)."""
    return len(_values)


def scrub(text: str) -> str:
    """``text`` with every registered secret form replaced by ``[redacted]``."""
    if not _values or not text:
        return text
    for form in sorted(_values, key=len, reverse=True):
        if form in text:
            text = text.replace(form, MASK)
    return text


class _ScrubbingStream:
    """Wraps a text stream and scrubs what is written to it."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        return self._stream.write(scrub(text) if isinstance(text, str) else text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _ScrubbingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_installed = False


def install() -> None:
    """Scrub this process's stdout, stderr, logging and (in IPython) tracebacks."""
    global _installed
    if _installed:
        return
    _installed = True
    sys.stdout = _ScrubbingStream(sys.stdout)
    sys.stderr = _ScrubbingStream(sys.stderr)
    scrubber = _ScrubbingFilter()
    root = logging.getLogger()
    root.addFilter(scrubber)
    for handler in root.handlers:
        handler.addFilter(scrubber)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        _install_ipython(shell)


def _install_ipython(shell) -> None:
    # Tracebacks are rendered by the shell and sent as an error message; scrub the rendered
    # lines, the exception value and the message alike.
    original = shell.showtraceback

    def showtraceback(*args, **kwargs):
        etype, value, _tb = sys.exc_info()
        if value is not None and value.args:
            try:
                value.args = tuple(scrub(a) if isinstance(a, str) else a for a in value.args)
            except Exception:  # noqa: BLE001 - some exceptions refuse new args; keep going
                pass
        return original(*args, **kwargs)

    shell.showtraceback = showtraceback
    send = shell._showtraceback

    def _showtraceback(etype, evalue, stb):
        return send(etype, scrub(str(evalue)), [scrub(line) for line in stb])

    shell._showtraceback = _showtraceback
