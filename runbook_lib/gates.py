"""Confirmation gates before costly or destructive steps.

A gate states what the next step will do and its cost class, and lets nothing proceed until it
is answered: headless, by the parameter ``gates.<name>`` set to the cluster's name (papermill and
CI cannot click); in JupyterLab, by a button. An unanswered gate raises
:class:`~runbook_lib.stage.GateNotAnswered`, which stops "Run All" at that cell.
"""

from __future__ import annotations

import logging

log = logging.getLogger("runbook_lib.gates")

# Answers given by clicking, per kernel; never saved in the notebook.
_clicked: set[str] = set()


def require(stage, answer_field: str, *, action: str, cost: str) -> None:
    from runbook_lib.stage import GateNotAnswered, headless

    expected = stage.params.cluster.name
    answer = getattr(stage.params.gates, answer_field)
    print(f"Gate: {action}")
    print(f"Cost class: {cost}")
    if answer == expected or answer_field in _clicked:
        print(f"Gate answered: gates.{answer_field} = {expected}")
        return
    if answer:
        raise GateNotAnswered(
            f"gates.{answer_field} is {answer!r}, which is not the cluster's name {expected!r}; "
            "nothing was done"
        )
    if not headless():
        _show_button(answer_field, action)
    raise GateNotAnswered(
        f"this step waits for confirmation: set gates.{answer_field} to {expected!r}"
        + ("" if headless() else ", or click the button above and run this cell again")
    )


def _show_button(answer_field: str, action: str) -> None:
    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError:
        return
    button = widgets.Button(description="Confirm", button_style="danger", icon="check")
    note = widgets.HTML(f"<b>Confirm:</b> {action}")

    def confirm(_):
        _clicked.add(answer_field)
        button.disabled = True
        note.value = f"<b>Confirmed:</b> {action}. Run this cell again to proceed."

    button.on_click(confirm)
    display(widgets.HBox([button, note]))
