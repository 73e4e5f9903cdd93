"""Confirmation gates before costly or destructive steps.

Stage notebooks call ``stage.gate(...)``, which lands in :func:`require`; the driving notebook
asks through :func:`confirm` before it starts the chain. A gate states what the next step will do
and its cost class, and lets nothing proceed until it is answered:

- headless (papermill, the chain runner, nbval, CI: see :func:`interactive`), by the parameter
  ``gates.<name>`` set to the cluster's name, since no one can click there;
- in JupyterLab, by a button, always, even when the parameters answer the gate (the sandbox's
  do): the cell blocks until the button is clicked, and raises
  :class:`~runbook_lib.stage.GateNotAnswered` when "Cancel" is clicked or the time limit passes,
  which stops "Run All" at that cell.

How a running cell hears a click: while a cell runs, the kernel's main thread is busy and widget
messages wait in its queue. ipykernel 7 reads the shell socket on a thread of its own and, for a
comm message, asks the comm which subshell should handle it (``_reply_subshell_for``). The gate's
buttons answer that question as usual but note a click on the way, on that thread, so the cell
can wake up; the message itself is then handled normally once the cell ends. This relies on that
ipykernel hook (present in 7.4). On a kernel without it, the gate falls back to a button that is
remembered when clicked, and the cell has to be run again.
"""

from __future__ import annotations

import html
import logging
import os
import threading
import time
from datetime import UTC, datetime

log = logging.getLogger("runbook_lib.gates")

# The time a person has to answer a gate in JupyterLab before nothing proceeds.
DEFAULT_TIMEOUT_S = 15 * 60.0
TIMEOUT_ENV = "RUNBOOK_GATE_TIMEOUT"

# Fallback only (a kernel that cannot hear a click while a cell runs): clicked gates, per
# kernel, each used once. Never saved in the notebook.
_clicked: set[str] = set()


def interactive() -> bool:
    """Whether a person's frontend runs this cell: a widget can be shown and answered.

    ``stage.headless()`` covers the chain runner (``RUNBOOK_HEADLESS=1``). Plain papermill and
    nbval do not say so, but they, like every client that no one sits at, send their cells with
    ``allow_stdin`` false: no one could answer ``input()``, nor click a button. JupyterLab sends
    true. ``RUNBOOK_INTERACTIVE=1`` counts as a person present.
    """
    from runbook_lib.stage import headless

    if headless():
        return False
    if os.environ.get("RUNBOOK_INTERACTIVE") == "1":
        return True
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    return bool(getattr(kernel, "_allow_stdin", False))


def gate_timeout(params=None) -> float:
    """Seconds to wait for a click: ``$RUNBOOK_GATE_TIMEOUT``, else ``timeouts.gate`` when the
    parameters have it, else 15 minutes."""
    from runbook_lib.parameters import parse_duration

    configured = os.environ.get(TIMEOUT_ENV, "").strip()
    if configured:
        try:
            return float(configured)
        except ValueError:
            return parse_duration(configured)
    value = getattr(getattr(params, "timeouts", None), "gate", None)
    return float(value) if value else DEFAULT_TIMEOUT_S


def require(stage, answer_field: str, *, action: str, cost: str,
            timeout_s: float | None = None) -> None:
    """Return when the gate ``gates.<answer_field>`` is answered; raise GateNotAnswered if not."""
    from runbook_lib.stage import GateNotAnswered

    expected = stage.params.cluster.name
    print(f"Gate: {action}")
    print(f"Cost class: {cost}")

    # Headless: only the parameter can answer.
    if not interactive():
        answer = getattr(stage.params.gates, answer_field)
        if answer == expected:
            print(f"Gate answered: gates.{answer_field} = {expected}")
            return
        if answer:
            raise GateNotAnswered(
                f"gates.{answer_field} is {answer!r}, which is not the cluster's name "
                f"{expected!r}; nothing was done")
        raise GateNotAnswered(
            f"this step waits for confirmation: set gates.{answer_field} to {expected!r}")

    # Interactive: a person confirms, whatever the parameters say.
    limit = gate_timeout(stage.params) if timeout_s is None else timeout_s
    answer = confirm(action, cost=cost, timeout_s=limit, key=answer_field,
                     title=f"Gate gates.{answer_field} (cluster {expected})")
    if answer == "confirmed":
        print(f"Gate answered: confirmed by a click ({answer_field})")
        return
    if answer == "cancelled":
        raise GateNotAnswered(f"gate {answer_field} was cancelled; nothing was done")
    if answer == "not blocking":
        raise GateNotAnswered(
            f"this step waits for confirmation: click the button above and run this cell "
            f"again, or run headless with gates.{answer_field} set to {expected!r}")
    raise GateNotAnswered(
        f"gate {answer_field} was not answered within {limit:g} s; nothing was done "
        f"(headless, gates.{answer_field} = {expected!r} answers it)")


def confirm(action: str, *, cost: str, timeout_s: float, key: str = "",
            title: str = "Confirm") -> str:
    """Show a confirmation and block until it is answered.

    Returns "confirmed", "cancelled", "timed out", or "not blocking" (a kernel that cannot hear
    a click while a cell runs: the fallback button was shown, and a later call with the same
    ``key`` returns "confirmed" once it was clicked). Without a widget frontend at all, no one
    can click: the call waits out ``timeout_s`` and returns "timed out".
    """
    if key and key in _clicked:
        _clicked.discard(key)
        return "confirmed"
    panel = _GatePanel(title, action, cost)
    try:
        if not panel.can_block():
            panel.remember_click_as(key)
            return "not blocking"
        answer = panel.wait(timeout_s)
        log.debug("gate %s: %s", key or title, answer)
        return answer
    except KeyboardInterrupt:
        panel.finish("interrupted")
        raise


class _GatePanel:
    """The gate's widgets: what will happen, its cost class, Confirm and Cancel, a countdown."""

    def __init__(self, title: str, action: str, cost: str):
        import ipywidgets as widgets
        from IPython.display import display

        self.title, self.action, self.cost = title, action, cost
        self._answer: str | None = None
        self._event = threading.Event()
        self.confirm_button = widgets.Button(description="Confirm", button_style="danger",
                                             icon="check", tooltip=action)
        self.cancel_button = widgets.Button(description="Cancel", icon="times")
        self.confirm_button.add_class("runbook-gate-confirm")
        self.cancel_button.add_class("runbook-gate-cancel")
        # Listen before the buttons are shown, so that no click can come first.
        if self.can_block():
            self._listen(self.confirm_button.comm, "confirmed")
            self._listen(self.cancel_button.comm, "cancelled")
        self._countdown = widgets.HTML("")
        text = widgets.HTML(
            f"<b>{html.escape(title)}</b><br>This will <b>{html.escape(action)}</b>."
            f"<br>Cost class: {html.escape(cost)}")
        self._box = widgets.VBox(
            [text, widgets.HBox([self.confirm_button, self.cancel_button]), self._countdown])
        self._box.add_class("runbook-gate")
        bundle = self._box._repr_mimebundle_()
        bundle["text/plain"] = f"{title}: waiting for confirmation to {action}"
        self._handle = display(bundle, raw=True, display_id=True)

    def can_block(self) -> bool:
        """Whether this kernel lets the gate hear a click while the cell runs (see module)."""
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        kernel = getattr(get_ipython(), "kernel", None)
        comms = (self.confirm_button.comm, self.cancel_button.comm)
        return (getattr(kernel, "shell_channel_thread", None) is not None
                and all(hasattr(c, "_reply_subshell_for") for c in comms))

    def wait(self, timeout_s: float) -> str:
        """Block until a click or the limit; leave a text line in place of the widgets."""
        deadline = time.monotonic() + timeout_s
        while not self._event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._countdown.value = (f"Waiting for a click; nothing proceeds after "
                                     f"{_minutes(left)} more.")
            self._event.wait(min(1.0, left))
        answer = self._answer or "timed out"
        self.finish(answer)
        return answer

    def _listen(self, comm, answer: str) -> None:
        # Runs on ipykernel's shell channel thread, for every message to this comm: note a
        # click, then route the message where it would have gone anyway.
        route = comm._reply_subshell_for

        def peek(data, default):
            content = data.get("content") if isinstance(data, dict) else None
            if (data.get("method") == "custom" and isinstance(content, dict)
                    and content.get("event") == "click" and self._answer is None):
                self._answer = answer
                self._event.set()
            return route(data, default)

        comm._reply_subshell_for = peek

    def remember_click_as(self, key: str) -> None:
        def clicked(_button):
            _clicked.add(key)
            self._countdown.value = "Confirmed. Run this cell again to proceed."
            self.confirm_button.disabled = self.cancel_button.disabled = True

        self.confirm_button.on_click(clicked)
        self._countdown.value = "Click Confirm, then run this cell again."

    def finish(self, answer: str) -> None:
        """Replace the widgets by one readable line (kept in the saved notebook)."""
        now = datetime.now(UTC).strftime("%H:%M:%S UTC")
        line = f"{self.title}: {answer} at {now}: {self.action} ({self.cost})"
        self._handle.update({"text/plain": line}, raw=True)
        for widget in (self._box, self.confirm_button, self.cancel_button, self._countdown):
            widget.close()


def _minutes(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 60}:{seconds % 60:02d} min" if seconds >= 60 else f"{seconds} s"
