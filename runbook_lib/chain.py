"""The chain runner: executes the stage notebooks in order with papermill, into a record.

``run`` validates the parameters (one error listing every problem, before anything is created),
starts the sandbox for sandbox runs, then executes each selected stage notebook into
``records/<UTC time>-<target>/NN_<stage>.ipynb``, passing each notebook only the parameter groups
it declares. It stops at the first failing stage, whatever the failure (a cell error, a cell
timeout, a dead kernel), and names the stage and the cell. ``resume`` continues a record from its
failed or unfinished stage with the same parameters; the failed attempt's notebook is kept beside
the new one, so the record shows both.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from runbook_lib import parameters as params_mod
from runbook_lib import redact
from runbook_lib.errors import RunbookError
from runbook_lib.record import RunRecord, StageRecord
from runbook_lib.stage import STAGES

log = logging.getLogger("runbook_lib.chain")

NOTEBOOKS_DIR = params_mod.NOTEBOOKS_DIR
RECORDS_DIR = params_mod.RECORDS_DIR

# Stages that destroy what the others built run only when their gate is answered in the
# parameters, or when chosen explicitly with --only/--from.
TEARDOWN = {"cleanup": "confirm_cleanup"}

WARM_AHEAD = 2


class StageFailed(RunbookError):
    """A stage notebook failed; carries the stage, the cell and the reason."""

    def __init__(self, stage: str, cell: int | None, reason: str, record_dir: Path):
        self.stage, self.cell, self.reason, self.record_dir = stage, cell, reason, record_dir
        where = f" at cell {cell}" if cell is not None else ""
        super().__init__(
            f"stage {stage} failed{where}: {reason}\n"
            f"record: {record_dir}\nresume with: python -m runbook_lib resume {record_dir}"
        )


@dataclass
class Selection:
    only: list[str] | None = None
    first: str | None = None
    last: str | None = None


def available_stages() -> list[str]:
    """The stages whose notebook exists, in chain order."""
    return [name for name, (number, _) in STAGES.items()
            if (NOTEBOOKS_DIR / f"{number}_{name}.ipynb").exists()]


def select(stages: list[str], selection: Selection, params) -> list[str]:
    """Apply --only / --from / --to; teardown stages need their gate or an explicit choice."""
    for name in (selection.only or []) + [selection.first, selection.last]:
        if name and name not in stages:
            raise params_mod.ParameterError(
                [f"unknown stage {name!r}; the stages are: {', '.join(stages)}"])
    if selection.only:
        return [s for s in stages if s in selection.only]
    chosen = list(stages)
    if selection.first:
        chosen = chosen[chosen.index(selection.first):]
    if selection.last:
        chosen = chosen[: chosen.index(selection.last) + 1]
    explicit = {selection.first, selection.last}
    for name, gate in TEARDOWN.items():
        answered = getattr(params.gates, gate) == params.cluster.name
        if name in chosen and not answered and name not in explicit:
            chosen.remove(name)
    return chosen


def declared_parameters(notebook: Path) -> list[str]:
    import papermill

    return list(papermill.inspect_notebook(str(notebook)).keys())


def _failure_details(exc: BaseException, output: Path) -> tuple[int | None, str]:
    """The failing cell's index and a one-line reason, for any kind of failure."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return exc.cell_index, f"{exc.ename}: {exc.evalue}"
    cell = _last_started_cell(output)
    if isinstance(exc, CellTimeoutError):
        return cell, f"cell timed out ({str(exc).splitlines()[0]})"
    if isinstance(exc, DeadKernelError):
        return cell, "the kernel died"
    return cell, f"{type(exc).__name__}: {exc}"


def _last_started_cell(output: Path) -> int | None:
    import nbformat

    try:
        nb = nbformat.read(str(output), as_version=4)
    except Exception:  # noqa: BLE001 - a notebook cut off mid-write has no answer to give
        return None
    started = [i for i, c in enumerate(nb.cells)
               if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    return started[-1] if started else None


def _execute(stage: StageRecord, record: RunRecord, values: dict, cell_timeout: float | None,
             km=None):
    import papermill

    source = NOTEBOOKS_DIR / f"{stage.number}_{stage.name}.ipynb"
    output = record.directory / stage.notebook
    if output.exists():
        count = len(stage.attempts) + 1
        attempt = record.directory / f"{stage.number}_{stage.name}.attempt{count}.ipynb"
        shutil.move(output, attempt)
        stage.attempts.append(attempt.name)
    declared = declared_parameters(source)
    parameters = {k: values[k] for k in declared if k in values}
    kwargs = {}
    if cell_timeout:
        kwargs["execution_timeout"] = cell_timeout
    if km is not None:
        kwargs["km"] = km
    papermill.execute_notebook(
        str(source),
        str(output),
        parameters=parameters,
        kernel_name="python3",
        log_output=True,
        progress_bar=False,
        cwd=str(NOTEBOOKS_DIR),
        **kwargs,
    )


def _kernel_environment(record: RunRecord) -> None:
    # Kernels inherit this process's environment.
    os.environ["RUNBOOK_RECORD_DIR"] = str(record.directory)
    os.environ["RUNBOOK_HEADLESS"] = "1"
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def warm_kernels(record: RunRecord, names: list[str]) -> list:
    """Start the first stages' kernels (they inherit the record's environment)."""
    from runbook_lib.kernels import WarmKernel

    _kernel_environment(record)
    return [WarmKernel(str(NOTEBOOKS_DIR)) for _ in names[:WARM_AHEAD]]


def execute(record: RunRecord, names: list[str], cell_timeout: float | None = None,
            ahead: list | None = None) -> RunRecord:
    """Run ``names`` in order into ``record``; raise StageFailed at the first failure."""
    from runbook_lib.kernels import WarmKernel, shutdown

    # Kernels for the next stages start and warm up ahead of time (two ahead: a short stage
    # would not leave the next kernel enough time).
    if ahead is None:
        ahead = warm_kernels(record, names)
    for index, name in enumerate(names):
        stage = record.stage(name)
        stage.status, stage.error, stage.failed_cell = "running", "", None
        stage.started = datetime.now(UTC).isoformat(timespec="seconds")
        record.save()
        print(f"==> {stage.number} {stage.title}", flush=True)
        start = time.monotonic()
        km = ahead.pop(0).take()
        if index + WARM_AHEAD < len(names):
            ahead.append(WarmKernel(str(NOTEBOOKS_DIR)))
        try:
            _execute(stage, record, record.values, cell_timeout, km)
        except BaseException as exc:  # noqa: BLE001 - every failure stops the chain alike
            for warm in ahead:
                warm.discard()
            if km is not None:
                shutdown(km)
            stage.duration_s = round(time.monotonic() - start, 2)
            cell, reason = _failure_details(exc, record.directory / stage.notebook)
            stage.status = "held" if "GateNotAnswered" in reason else "failed"
            stage.error, stage.failed_cell = redact.scrub(reason), cell
            record.save()
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise StageFailed(name, cell, stage.error, record.directory) from None
        if km is not None:
            shutdown(km)
        stage.duration_s = round(time.monotonic() - start, 2)
        stage.status = "succeeded"
        record.save()
        print(f"<== {stage.number} {stage.title}: succeeded in {stage.duration_s:.1f} s",
              flush=True)
    return record


def new_record(params, values: dict, source: str, names: list[str], records_dir: Path,
               selection: Selection) -> RunRecord:
    stages = []
    for name in available_stages():
        number, title = STAGES[name]
        status = "pending" if name in names else "not run"
        stages.append(StageRecord(number=number, name=name, title=title,
                                  notebook=f"{number}_{name}.ipynb", status=status))
    return RunRecord.create(
        records_dir, params.target, deployment=params.deployment_id, parameters_source=source,
        values=values, stages=stages, selection=selection.__dict__,
    )


def run(
    target_file: Path | str,
    overrides: list[dict] | None = None,
    selection: Selection | None = None,
    records_dir: Path = RECORDS_DIR,
    cell_timeout: float | None = None,
) -> RunRecord:
    """Validate, then run the selected stages into a new record (see the module docstring)."""
    selection = selection or Selection()
    values = params_mod.merged_values(target_file, overrides)
    params = params_mod.validate(values, str(target_file))
    names = select(available_stages(), selection, params)
    source = f"parameters/base.yaml + {target_file}" + (" + overrides" if overrides else "")
    record = new_record(params, values, source, names, records_dir, selection)
    return _run_with_target(params, record, names, cell_timeout)


def _run_with_target(params, record: RunRecord, names: list[str], cell_timeout):
    from runbook_lib.target import start_run

    # The first kernels start while the target's local parts (if any) come up.
    ahead = warm_kernels(record, names)
    target_run = start_run(params)
    if target_run.notes:
        record.target_notes = target_run.notes
        record.save()
    try:
        execute(record, names, cell_timeout, ahead)
    except StageFailed:
        target_run.finished(succeeded=False)
        raise
    target_run.finished(succeeded=True)
    print(f"Record: {record.directory}/summary.md")
    return record


def resume(record_dir: Path, cell_timeout: float | None = None) -> RunRecord:
    """Continue a record from its failed or unfinished stage, with the same parameters."""
    record = RunRecord.load(record_dir)
    params = params_mod.validate(record.values, record.parameters_source)
    remaining = [s.name for s in record.stages if s.status in ("failed", "held", "pending",
                                                              "running")]
    if not remaining:
        print(f"Nothing to resume: every selected stage of {record_dir} succeeded.")
        return record
    print(f"Resuming {record_dir} from {remaining[0]}")
    return _run_with_target(params, record, remaining, cell_timeout)
