"""Waiting with progress: one helper for every wait the runbook does.

A wait polls a check function until it reports done, shows a progress bar (a widget in
JupyterLab, plain text in a terminal or a papermill log) with the resource's current state, and
raises :class:`~runbook_lib.errors.WaitTimeout` naming the resource, its last state and the
limit. The bar always ends with a readable final line, so a saved notebook keeps the outcome.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from runbook_lib.errors import WaitTimeout

log = logging.getLogger("runbook_lib.progress")


@dataclass
class Status:
    """What a check function reports: whether the wait is over, and the state to show."""

    done: bool
    state: str
    failed: bool = False


def _in_notebook_frontend() -> bool:
    if os.environ.get("RUNBOOK_HEADLESS") == "1":
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return (shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
            and "papermill" not in sys.modules)


class _WidgetBar:
    """A live bar in JupyterLab; closed at the end so the saved notebook keeps only text."""

    def __init__(self, resource: str, total: float):
        from tqdm.notebook import tqdm

        self._bar = tqdm(total=max(1, round(total)), desc=f"waiting for {resource}", unit="s",
                         leave=False, bar_format="{desc}: {bar} {n_fmt}/{total_fmt} s {postfix}")

    def update(self, elapsed: float, state: str) -> None:
        self._bar.n = min(round(elapsed), self._bar.total)
        self._bar.set_postfix_str(state, refresh=True)

    def close(self) -> None:
        self._bar.close()


class _TextBar:
    """A plain bar for terminals and papermill logs: one line whenever the state changes, and
    at least every ``every_s`` seconds, so a log shows progress without a flood of lines."""

    WIDTH = 20

    def __init__(self, resource: str, total: float, every_s: float = 10.0):
        self.resource, self.total, self.every_s = resource, total, every_s
        self._last_state, self._last_time = None, -every_s

    def update(self, elapsed: float, state: str) -> None:
        if state == self._last_state and elapsed - self._last_time < self.every_s:
            return
        self._last_state, self._last_time = state, elapsed
        filled = min(self.WIDTH, int(self.WIDTH * elapsed / self.total)) if self.total else 0
        bar = "#" * filled + "." * (self.WIDTH - filled)
        print(f"  [{bar}] {elapsed:5.0f}/{self.total:.0f} s  waiting for {self.resource}: "
              f"{state}", flush=True)

    def close(self) -> None:
        pass


def wait_for(
    resource: str,
    check: Callable[[], Status],
    timeout_s: float,
    interval_s: float = 1.0,
) -> Status:
    """Poll ``check`` until it is done; show progress; raise WaitTimeout at ``timeout_s``.

    ``check`` returns a :class:`Status`. A status with ``failed=True`` ends the wait at once and
    is returned to the caller, who knows how to explain that failure.
    """
    start = time.monotonic()
    bar = _WidgetBar(resource, timeout_s) if _in_notebook_frontend() else _TextBar(resource,
                                                                                  timeout_s)
    status = Status(False, "not checked yet")
    try:
        while True:
            status = check()
            elapsed = time.monotonic() - start
            bar.update(elapsed, status.state)
            if status.done or status.failed:
                break
            if elapsed >= timeout_s:
                raise WaitTimeout(resource, status.state, timeout_s)
            time.sleep(min(interval_s, max(0.0, timeout_s - elapsed)))
    finally:
        bar.close()
    elapsed = time.monotonic() - start
    outcome = "failed" if status.failed else "done"
    print(f"{resource}: {outcome} after {elapsed:.1f} s ({status.state})", flush=True)
    log.debug("%s: %s after %.1f s", resource, outcome, elapsed)
    return status
