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


def sanitizer():
    """The same substitutions nbval applies, so committed outputs hold no machine paths,
    ports or times, and compare equal to a fresh run's sanitized outputs."""
    import re

    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((ROOT / "tests" / "nbval-sanitize.cfg").read_text())
    compiled = [(re.compile(regex), replace) for regex, replace in patterns]

    def clean(text: str) -> str:
        for regex, replace in compiled:
            text = regex.sub(replace, text)
        return text

    return clean


def clean_outputs(outputs, clean) -> list:
    for output in outputs:
        if "text" in output:
            output["text"] = clean(output["text"])
        for mime in ("text/plain", "text/markdown"):
            if mime in output.get("data", {}):
                output["data"][mime] = clean(output["data"][mime])
    return outputs


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="refresh-"))
    os.environ["RUNBOOK_SANDBOX_DIR"] = str(root / "sandbox")
    os.environ["RUNBOOK_STATE_DIR"] = str(root / "state")
    for name in ("POSTGRES_PASSWORD", "APP_ROLE_PASSWORD", "CONDUCTOR_API_KEY"):
        os.environ.pop(name, None)
    from runbook_lib import chain

    record = chain.run(ROOT / "parameters" / "sandbox.yaml", records_dir=root / "records")
    clean = sanitizer()
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
                cell.outputs = clean_outputs(done.outputs, clean)
                cell.execution_count = done.execution_count
        nbformat.write(source, str(path))
        print(f"stored outputs in {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
