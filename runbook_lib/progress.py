"""Waiting with progress: one helper for every wait the runbook does.

A wait polls a check function until it reports done, shows a progress bar (a widget in
JupyterLab, plain text in a terminal or a papermill log) with the resource's current state, and
raises :class:`~runbook_lib.errors.WaitTimeout` naming the resource, its last state and the
limit. The bar always ends with a readable final line, so a saved notebook keeps the outcome.
"""

from __future__ import annotations

import html
import logging
import threading
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
    """True on the main thread of a Jupyter kernel that a person drives (JupyterLab).

    Waits on other threads (the cluster's, while RDS is awaited on the main one) print text:
    a thread has no cell to attach a widget to.
    """
    from runbook_lib.gates import interactive

    if threading.current_thread() is not threading.main_thread():
        return False
    return interactive()


class _WidgetBar:
    """A live bar in JupyterLab with the resource's current state.

    The bar is displayed under a display id; when the wait ends, that display is replaced by
    one plain text line (the outcome), and the widgets are closed. A saved notebook therefore
    keeps a readable line, where a widget left open (tqdm.notebook does this) would keep only
    a placeholder and the text of its first frame.
    """

    def __init__(self, resource: str, total: float):
        import ipywidgets as widgets
        from IPython.display import display

        self.resource, self.total = resource, max(total, 1.0)
        self._name = widgets.HTML(f"waiting for <b>{html.escape(resource)}</b>")
        self._bar = widgets.FloatProgress(value=0.0, min=0.0, max=self.total,
                                          bar_style="info",
                                          layout=widgets.Layout(width="240px"))
        self._state = widgets.HTML("")
        self._box = widgets.HBox([self._name, self._bar, self._state])
        self._box.add_class("runbook-progress")
        bundle = self._box._repr_mimebundle_()
        bundle["text/plain"] = f"waiting for {resource}"
        self._handle = display(bundle, raw=True, display_id=True)
        self._last: tuple[int, str] | None = None

    def update(self, elapsed: float, state: str) -> None:
        shown = (int(elapsed), state)
        if shown == self._last:
            return
        self._last = shown
        self._bar.value = min(elapsed, self.total)
        self._state.value = (f"<code>{elapsed:4.0f}/{self.total:.0f} s</code> "
                             f"{html.escape(state)}")

    def close(self, line: str) -> None:
        # Replace the widget's output by text first, then close the widgets' models.
        if self._handle is not None:
            self._handle.update({"text/plain": line}, raw=True)
        self._box.close()
        for child in (self._name, self._bar, self._state):
            child.close()


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

    def close(self, line: str) -> None:
        print(line, flush=True)


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
    outcome = "stopped by an error"
    try:
        while True:
            status = check()
            elapsed = time.monotonic() - start
            bar.update(elapsed, status.state)
            if status.done or status.failed:
                outcome = "failed" if status.failed else "done"
                break
            if elapsed >= timeout_s:
                outcome = "timed out"
                raise WaitTimeout(resource, status.state, timeout_s)
            time.sleep(min(interval_s, max(0.0, timeout_s - elapsed)))
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    finally:
        # Every ending leaves one readable line: done, failed, timed out, interrupted, error.
        elapsed = time.monotonic() - start
        bar.close(f"{resource}: {outcome} after {elapsed:.1f} s ({status.state})")
    log.debug("%s: %s after %.1f s", resource, outcome, elapsed)
    return status
