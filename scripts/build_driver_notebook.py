"""Writes notebooks/runbook.ipynb, the driving notebook, from the cells below (outputs cleared).

The driving notebook is the whole runbook in one place for a person in JupyterLab: the
parameters form, then the chain runner (every stage notebook in order, each executed headless
into a record), then the record's summary. Its parameters cell declares every group, so papermill
can drive it too (``-p stages '["preflight"]'`` runs a part of the chain).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NAME = "runbook"

TITLE = """# Runbook: deploy a DBOS application to Kubernetes on AWS

This notebook runs the whole runbook: each stage notebook (`00_preflight` to `90_cleanup`) in
order, executed headless into a new record under `records/`, stopping at the first failure. The
parameters come from the form below: a parameters file from `parameters/` (the sandbox rehearsal,
on this machine, unless you pick another) and your edits. Headless, the stage gates are answered
by the parameters `gates.confirm_create` and `gates.confirm_cleanup` (each equal to the cluster's
name); cleanup runs only when its gate is answered. Here, a button asks before anything starts.

To step through one stage at a time instead, open the stage notebooks themselves."""

PARAMETERS_COMMENT = """\
# Parameters. None means: take the value from the form (or from parameters/base.yaml and the
# target file, under papermill). `stages` picks a part of the chain, e.g. ["preflight"]; None
# runs every stage."""

FORM = """\
# In JupyterLab: a form to pick a parameters file, edit values and enter secrets
# (kept in the kernel's memory only). Headless, it shows nothing.
from runbook_lib.form import parameters_form

parameters_form(globals())"""

RUN_TEXT = """Run the chain. A button first states which stages will run on which target and
their cost class; after the click, each stage prints one line when it starts and one when it
ends. A failed stage stops the chain and names the stage, the cell and how to resume."""

RUN = """\
from runbook_lib.form import run_chain

record = run_chain(globals(), stages)"""

SUMMARY_TEXT = """The record's summary is shown above once the chain ends. Everything the run
wrote (executed notebooks, manifests, outputs) is in the record's folder:"""

SUMMARY = "print(record.directory)"


def parameters_cell() -> nbformat.NotebookNode:
    from runbook_lib.parameters import GROUPS

    lines = [PARAMETERS_COMMENT, 'target = "sandbox"']
    lines += [f"{group} = None" for group in GROUPS if group != "target"]
    lines.append("stages = None")
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["parameters"]
    return cell


def _not_under_nbval(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    # The nbval re-run of notebooks/ checks the stage notebooks one by one; running the whole
    # chain once more from here would only repeat them.
    cell.metadata["tags"] = ["nbval-skip"]
    return cell


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    cells = [
        nbformat.v4.new_markdown_cell(TITLE),
        parameters_cell(),
        nbformat.v4.new_code_cell(FORM),
        nbformat.v4.new_markdown_cell(RUN_TEXT),
        _not_under_nbval(nbformat.v4.new_code_cell(RUN)),
        nbformat.v4.new_markdown_cell(SUMMARY_TEXT),
        _not_under_nbval(nbformat.v4.new_code_cell(SUMMARY)),
    ]
    for index, cell in enumerate(cells):
        cell["id"] = f"{NAME}-{index:02d}"
    nb.cells = cells
    return nb


def main() -> None:
    path = ROOT / "notebooks" / f"{NAME}.ipynb"
    nbformat.write(build(), str(path))
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
