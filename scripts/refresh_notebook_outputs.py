"""Store the outputs of a fresh sandbox run in the committed stage notebooks.

Runs the whole chain against a new sandbox with its own state directory, then copies each
executed cell's outputs into the notebook in notebooks/ with the same cell id (the injected
parameters cell is not copied, so the notebooks keep their defaults). The committed outputs show
an operator what each step prints before they run it, and nbval re-runs them as regression
tests.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="refresh-"))
    os.environ["RUNBOOK_SANDBOX_DIR"] = str(root / "sandbox")
    os.environ["RUNBOOK_STATE_DIR"] = str(root / "state")
    for name in ("POSTGRES_PASSWORD", "APP_ROLE_PASSWORD", "CONDUCTOR_API_KEY"):
        os.environ.pop(name, None)
    from runbook_lib import chain

    record = chain.run(ROOT / "parameters" / "sandbox.yaml", records_dir=root / "records")
    for stage in record.stages:
        if stage.status != "succeeded":
            continue
        executed = nbformat.read(str(record.directory / stage.notebook), as_version=4)
        outputs = {c.get("id"): c for c in executed.cells if c.cell_type == "code"}
        path = ROOT / "notebooks" / stage.notebook
        source = nbformat.read(str(path), as_version=4)
        for cell in source.cells:
            if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
                continue
            done = outputs.get(cell.get("id"))
            if done is not None:
                cell.outputs = done.outputs
                cell.execution_count = done.execution_count
        nbformat.write(source, str(path))
        print(f"stored outputs in {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
