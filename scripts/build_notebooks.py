"""Writes the stage notebooks in notebooks/ from the cell lists below (outputs cleared).

The notebooks carry the narrative: a markdown cell says what the next step does and why, and the
code cell after it calls one runbook_lib function. Edit the cells here, run this script, then
``python scripts/refresh_notebook_outputs.py`` to store the outputs of a fresh sandbox run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.stage_cells import NOTEBOOKS  # noqa: E402


def parameters_cell(groups: list[str]) -> nbformat.NotebookNode:
    lines = [
        "# Parameters. papermill and the chain runner replace these; None means: take the value",
        "# from parameters/base.yaml and the target file. Left as they are, the notebook runs",
        "# the sandbox rehearsal (parameters/sandbox.yaml) and touches nothing outside this",
        "# machine.",
        'target = "sandbox"',
    ]
    lines += [f"{group} = None" for group in groups]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["parameters"]
    return cell


def build(name: str, spec: dict) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    form = nbformat.v4.new_code_cell(
        "# In JupyterLab: a form to pick a parameters file, edit values and enter secrets\n"
        "# (kept in the kernel's memory only). Headless, it shows nothing.\n"
        "from runbook_lib.form import parameters_form\n\n"
        "parameters_form(globals())"
    )
    cells = [nbformat.v4.new_markdown_cell(spec["title"]), parameters_cell(spec["groups"]), form]
    for kind, text, *tags in spec["cells"]:
        cell = (nbformat.v4.new_markdown_cell(text) if kind == "md"
                else nbformat.v4.new_code_cell(text))
        if tags:
            cell.metadata["tags"] = list(tags[0])
        cells.append(cell)
    for index, cell in enumerate(cells):
        cell["id"] = f"{name}-{index:02d}"
    nb.cells = cells
    return nb


def main() -> None:
    for filename, spec in NOTEBOOKS.items():
        path = ROOT / "notebooks" / filename
        nbformat.write(build(filename.removesuffix(".ipynb"), spec), str(path))
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
