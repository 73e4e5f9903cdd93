"""The parameters form at the top of every stage notebook (JupyterLab only).

Headless (papermill, the chain runner) it shows nothing: the papermill parameters answer it.
"""

from __future__ import annotations


def parameters_form(namespace: dict) -> None:
    """Show the parameters form when a person runs the notebook; do nothing headless."""
    from runbook_lib.stage import headless

    if headless():
        return
