"""The deployment record: one directory per run, readable like a pull request.

``records/<UTC time>-<target>/`` holds the executed stage notebooks (``NN_<stage>.ipynb``), the
files the stages wrote (eksctl config, manifests, sealed secrets, plots) under ``NN_<stage>/``,
``outputs.json`` (what each stage published), ``run.json`` (the machine-readable state the
resume command reads), and a summary in Markdown and HTML: target, parameters (secret sources
only, never values), per-stage status and duration, key outputs, and links to the notebooks.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

from runbook_lib import redact

STATUSES = ("pending", "running", "succeeded", "failed", "held", "not run")


@dataclass
class StageRecord:
    """One stage's line in the record."""

    number: str
    name: str
    title: str
    notebook: str
    status: str = "pending"
    started: str = ""
    duration_s: float | None = None
    error: str = ""
    failed_cell: int | None = None
    attempts: list[str] = field(default_factory=list)


@dataclass
class RunRecord:
    """The state of one run, kept in ``run.json`` next to the notebooks."""

    directory: Path
    target: str
    deployment: str
    parameters_source: str
    values: dict
    created: str = ""
    stages: list[StageRecord] = field(default_factory=list)
    target_notes: list[str] = field(default_factory=list)
    selection: dict = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path, target: str, **kwargs) -> RunRecord:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        directory = Path(root) / f"{stamp}-{target}"
        suffix = 1
        while directory.exists():
            suffix += 1
            directory = Path(root) / f"{stamp}-{target}-{suffix}"
        directory.mkdir(parents=True)
        created = datetime.now(UTC).isoformat(timespec="seconds")
        record = cls(directory=directory, target=target, created=created, **kwargs)
        record.save()
        return record

    @classmethod
    def load(cls, directory: Path) -> RunRecord:
        data = json.loads((Path(directory) / "run.json").read_text())
        data["directory"] = Path(directory)
        data["stages"] = [StageRecord(**s) for s in data["stages"]]
        return cls(**data)

    def stage(self, name: str) -> StageRecord:
        return next(s for s in self.stages if s.name == name)

    def outputs(self) -> dict:
        path = self.directory / "outputs.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def save(self) -> None:
        data = asdict(self)
        data["directory"] = str(self.directory)
        text = redact.scrub(json.dumps(data, indent=2, default=str))
        tmp = self.directory / "run.json.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.directory / "run.json")
        self.write_summary()

    # The summary ----------------------------------------------------------------------------

    def _rows(self) -> list[tuple[str, str, str, str, str]]:
        rows = []
        for s in self.stages:
            duration = f"{s.duration_s:.1f} s" if s.duration_s is not None else ""
            note = s.error.splitlines()[0] if s.error else ""
            if s.failed_cell is not None:
                note = f"cell {s.failed_cell}: {note}"
            rows.append((f"{s.number} {s.title}", s.status, duration, note, s.notebook))
        return rows

    def write_summary(self) -> None:
        """Write ``summary.md`` and ``summary.html`` from the current state."""
        outputs = self.outputs()
        params_yaml = yaml.safe_dump(self.values, sort_keys=False, default_flow_style=False)
        md = [
            f"# Deployment record: {self.deployment} on {self.target}",
            "",
            f"- Created: {self.created}",
            f"- Target: **{self.target}**",
            f"- Parameters: {self.parameters_source}",
        ]
        md += [f"- {line}" for line in self.target_notes]
        md += ["", "## Stages", "", "| Stage | Status | Duration | Note | Notebook |",
               "|---|---|---|---|---|"]
        for stage, status, duration, note, notebook in self._rows():
            link = f"[{notebook}]({notebook})" if (self.directory / notebook).exists() else ""
            note = note.replace("|", "\\|")
            md.append(f"| {stage} | {status} | {duration} | {note} | {link} |")
        md += ["", "## Outputs", ""]
        if outputs:
            for stage_name, values in outputs.items():
                md.append(f"### {stage_name}")
                md += [f"- `{k}`: `{v}`" for k, v in values.items()]
                md.append("")
        else:
            md.append("(none yet)")
        md += ["", "## Parameters (secret sources only, never values)", "", "```yaml",
               params_yaml.rstrip(), "```", ""]
        text = redact.scrub("\n".join(md))
        (self.directory / "summary.md").write_text(text)
        (self.directory / "summary.html").write_text(self._html(outputs, params_yaml))

    def _html(self, outputs: dict, params_yaml: str) -> str:
        e = html.escape
        rows = []
        for stage, status, duration, note, notebook in self._rows():
            link = (f'<a href="{e(notebook)}">{e(notebook)}</a>'
                    if (self.directory / notebook).exists() else "")
            rows.append(f"<tr class='{e(status)}'><td>{e(stage)}</td><td>{e(status)}</td>"
                        f"<td>{e(duration)}</td><td>{e(note)}</td><td>{link}</td></tr>")
        out_html = "".join(
            f"<h3>{e(name)}</h3><ul>"
            + "".join(f"<li><code>{e(k)}</code>: <code>{e(str(v))}</code></li>"
                      for k, v in values.items())
            + "</ul>"
            for name, values in outputs.items()
        ) or "<p>(none yet)</p>"
        notes = "".join(f"<li>{e(line)}</li>" for line in self.target_notes)
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(self.deployment)} on {e(self.target)}</title>
<style>
body {{ font-family: sans-serif; max-width: 70em; margin: 2em auto; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: .3em .6em; }}
tr.succeeded td:nth-child(2) {{ color: #176f2c; }} tr.failed td:nth-child(2) {{ color: #b00; }}
pre {{ background: #f6f6f6; padding: 1em; }}
</style></head><body>
<h1>Deployment record: {e(self.deployment)} on {e(self.target)}</h1>
<ul><li>Created: {e(self.created)}</li><li>Target: <b>{e(self.target)}</b></li>
<li>Parameters: {e(self.parameters_source)}</li>{notes}</ul>
<h2>Stages</h2>
<table><tr><th>Stage</th><th>Status</th><th>Duration</th><th>Note</th><th>Notebook</th></tr>
{''.join(rows)}</table>
<h2>Outputs</h2>{out_html}
<h2>Parameters (secret sources only, never values)</h2><pre>{e(params_yaml)}</pre>
</body></html>
"""
        return redact.scrub(page)
