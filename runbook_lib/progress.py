"""Waiting with progress: one helper for every wait the runbook does.

A wait polls a check function until it reports done, shows a progress bar (a widget in
JupyterLab, plain text in a terminal or a papermill log) with the resource's current state, and
raises :class:`~runbook_lib.errors.WaitTimeout` naming the resource, its last state and the
limit. The bar always ends with a readable final line, so a saved notebook keeps the outcome.
"""

from __future__ import annotations

import logging
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
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


def _bar(total: float, desc: str):
    # A widget bar only when a live frontend can render it; papermill and terminals get text.
    if _in_notebook_frontend() and not _headless():
        from tqdm.notebook import tqdm
    else:
        from tqdm import tqdm
    return tqdm(
        total=round(total),
        desc=desc,
        unit="s",
        file=sys.stdout,
        bar_format="{desc}: {bar:20} {n_fmt}/{total_fmt} s [{postfix}]",
        mininterval=1.0,
        leave=True,
    )


def _headless() -> bool:
    import os

    return os.environ.get("RUNBOOK_HEADLESS") == "1"


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
    bar = _bar(timeout_s, f"waiting for {resource}")
    status = Status(False, "not checked yet")
    try:
        while True:
            status = check()
            elapsed = time.monotonic() - start
            bar.n = min(round(elapsed), bar.total)
            bar.set_postfix_str(status.state, refresh=True)
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
    return status
