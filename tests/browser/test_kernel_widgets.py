"""The gate, the progress bar and the failure hints in a real kernel, driven over its messages
exactly as JupyterLab drives it (a click is the comm message the button's view sends)."""

from __future__ import annotations

import time

from .harness import widget_comm

STAGE = """
from runbook_lib import gates, parameters
from runbook_lib.stage import Stage

stage = Stage(name="infrastructure", params=parameters.load(parameters.SANDBOX_FILE),
              target=None, record_dir=None)
"""

GATE = """
stage.gate("confirm_create", action="create the cluster", cost="billable on AWS")
print("after the gate")
"""


def _open_gate(kernel):
    """Start the gate cell; return its execution and the Confirm and Cancel buttons' comms."""
    execution = kernel.submit(GATE)
    comms: dict[str, str] = {}

    def buttons_open(message):
        for label in ("Confirm", "Cancel"):
            comm = widget_comm(message, "ButtonModel", description=label)
            if comm:
                comms[label] = comm
        return len(comms) == 2

    kernel.collect(execution, timeout_s=30, until=buttons_open)
    return execution, comms


def test_gate_blocks_until_confirm_is_clicked(kernel):
    kernel.run(STAGE)
    execution, comms = _open_gate(kernel)

    # Asked even though the sandbox's parameters answer this gate: nothing runs meanwhile.
    time.sleep(2.0)
    assert execution.reply is None
    assert "after the gate" not in execution.stdout

    clicked = time.monotonic()
    kernel.send_click(comms["Confirm"])
    kernel.collect(execution, timeout_s=30)
    assert time.monotonic() - clicked < 5
    assert execution.reply["status"] == "ok", execution.error
    assert "Cost class: billable on AWS" in execution.stdout
    assert "Gate answered: confirmed by a click" in execution.stdout
    assert "after the gate" in execution.stdout
    # The widgets are replaced by a readable line for the saved notebook.
    updates = [m["content"]["data"]["text/plain"]
               for m in execution.of_type("update_display_data")]
    assert any("confirmed at" in text and "create the cluster" in text for text in updates)


def test_gate_cancel_and_time_limit_stop_the_cell(kernel):
    kernel.run(STAGE)
    execution, comms = _open_gate(kernel)
    kernel.send_click(comms["Cancel"])
    kernel.collect(execution, timeout_s=30)
    assert execution.reply["status"] == "error"
    assert execution.error["ename"] == "GateNotAnswered"
    assert "cancelled" in execution.error["evalue"]
    assert "after the gate" not in execution.stdout

    started = time.monotonic()
    execution = kernel.run(
        'gates.require(stage, "confirm_create", action="x", cost="y", timeout_s=1.5)\n'
        'print("after the gate")', timeout_s=30)
    assert 1.5 <= time.monotonic() - started < 10
    assert execution.error["ename"] == "GateNotAnswered"
    assert "not answered within 1.5 s" in execution.error["evalue"]
    assert "after the gate" not in execution.stdout


def test_progress_widget_leaves_a_text_line(kernel):
    execution = kernel.run("""
import time
from runbook_lib.progress import Status, wait_for

start = time.monotonic()
wait_for("test resource", lambda: Status(time.monotonic() - start > 1.2,
                                        "Ready" if time.monotonic() - start > 1.2 else "Pending"),
         timeout_s=30, interval_s=0.3)
""")
    assert execution.reply["status"] == "ok", execution.error
    shown = execution.of_type("display_data")
    assert any("application/vnd.jupyter.widget-view+json" in m["content"]["data"]
               for m in shown)
    bar_id = shown[0]["content"]["transient"]["display_id"]
    updates = execution.of_type("update_display_data")
    final = updates[-1]["content"]
    assert final["transient"]["display_id"] == bar_id
    # Text only: a saved notebook keeps this line, not a widget placeholder.
    assert set(final["data"]) == {"text/plain"}
    assert final["data"]["text/plain"].startswith("test resource: done after ")
    assert final["data"]["text/plain"].endswith("(Ready)")
    # The live bar showed the state as it changed.
    states = [m for m in execution.of_type("comm_msg")
              if "Pending" in str(m["content"]["data"].get("state", {}).get("value", ""))]
    assert states


def test_failure_shows_a_hint_and_stays_an_error(kernel):
    execution = kernel.run("""
from runbook_lib import hints
from runbook_lib.errors import WaitTimeout

hints.install("infrastructure")
raise WaitTimeout("RDS instance dbos-app-pg", "creating", 60)
""")
    assert execution.reply["status"] == "error"
    assert execution.error["ename"] == "WaitTimeout"
    text = execution.stdout
    assert "What to check (stage 10 Infrastructure, WaitTimeout):" in text
    assert "Waited 60 s for RDS instance dbos-app-pg." in text
    assert "CloudFormation" in text
    assert "run this notebook again from the top" in text

    execution = kernel.run("raise KeyError('x')")
    assert execution.error["ename"] == "KeyError"
    assert "not one of the runbook's own errors" in execution.stdout
