"""The stage context: what the first code cell of every stage notebook sets up.

``stage = begin("infrastructure", globals())`` reads the parameter groups the notebook declared
(as papermill injected them, or their defaults), merges them over ``parameters/base.yaml``,
validates everything at once, turns on logging and secret scrubbing, connects to the target, and
returns a :class:`Stage` through which the notebook's cells publish outputs, write artifacts into
the record, answer gates, and end with a link to the next stage.

Run by the chain runner, a stage writes into the run's record directory (the environment variable
``RUNBOOK_RECORD_DIR``); run alone (plain papermill, or JupyterLab), it writes its artifacts and
outputs into the deployment's state directory.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from runbook_lib import hints, redact
from runbook_lib import parameters as params_mod
from runbook_lib.errors import Refusal
from runbook_lib.outcome import Outcome, Outcomes, table

log = logging.getLogger("runbook_lib.stage")

# Stage order and titles; the chain runner runs the notebooks in this order.
STAGES = {
    "preflight": ("00", "Preflight"),
    "infrastructure": ("10", "Infrastructure"),
    "secrets": ("20", "Sealed secrets"),
    "migration": ("30", "Database migration"),
    "deployment": ("40", "Application deployment"),
    "autoscaling": ("50", "Autoscaling and load test"),
    "upgrade": ("60", "Versioned upgrade"),
    "cleanup": ("90", "Cleanup"),
}


class GateNotAnswered(Refusal):
    """A confirmation gate was not answered: nothing after it runs."""

    hint = "Answer the gate (click the button, or set the gate parameter) and run again."


def headless() -> bool:
    """True under the chain runner or papermill, where no one can click a button."""
    if os.environ.get("RUNBOOK_HEADLESS") == "1":
        return True
    return "papermill" in sys.modules and os.environ.get("RUNBOOK_INTERACTIVE") != "1"


def _setup_logging() -> None:
    logger = logging.getLogger("runbook_lib")
    if not any(getattr(h, "_runbook", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._runbook = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # Third-party libraries stay quiet: their debug logs can carry request bodies.
    for noisy in ("botocore", "boto3", "urllib3", "kubernetes", "sh"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass
class Stage:
    """A running stage: its parameters, target, and where its record goes."""

    name: str
    params: params_mod.Parameters
    target: object
    record_dir: Path | None
    started: float = field(default_factory=time.monotonic)

    @property
    def number(self) -> str:
        return STAGES[self.name][0]

    @property
    def artifacts_dir(self) -> Path:
        """Where files for the record go (manifests, configs, sealed secrets, plots)."""
        base = self.record_dir if self.record_dir else self.target.state_dir / "artifacts"
        path = base / f"{self.number}_{self.name}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def write_artifact(self, name: str, text: str) -> Path:
        """Write a file into the record (scrubbed once more on the way) and return its path."""
        path = self.artifacts_dir / name
        path.write_text(redact.scrub(text))
        return path

    def publish(self, **outputs) -> None:
        """Record key outputs (IDs, endpoints, image references) for the summary."""
        clean = {k: redact.scrub(str(v)) for k, v in outputs.items()}
        for path in self._output_files():
            current = json.loads(path.read_text()) if path.exists() else {}
            current.setdefault(self.name, {}).update(clean)
            path.write_text(json.dumps(current, indent=2, sort_keys=True))
        for key, value in clean.items():
            print(f"published {key} = {value}")

    def _output_files(self) -> list[Path]:
        files = [self.target.state_dir / "outputs.json"]
        if self.record_dir:
            files.append(self.record_dir / "outputs.json")
        return files

    def show(self, outcomes: list[Outcome]) -> Outcomes:
        """Print what a step did to each resource; the notebook shows it once."""
        print(table(outcomes))
        return Outcomes(outcomes)

    def gate(self, answer_field: str, *, action: str, cost: str) -> None:
        """Stop unless the gate ``gates.<answer_field>`` is answered with the cluster's name.

        Headless, the parameter answers it. In JupyterLab, a button states what will happen and
        its cost class; the cell stops here until the gate is answered.
        """
        from runbook_lib import gates

        gates.require(self, answer_field, action=action, cost=cost)

    def finish(self) -> None:
        """End the stage: how long it took, and where to go next."""
        elapsed = time.monotonic() - self.started
        names = list(STAGES)
        index = names.index(self.name)
        following = names[index + 1] if index + 1 < len(names) else None
        print(f"Stage {self.number} {STAGES[self.name][1]} finished in {elapsed:.1f} s "
              f"on target {self.params.target}.")
        if following:
            number, title = STAGES[following]
            print(f"Next: {number}_{following}.ipynb ({title})")
            _markdown(f"**Next:** [{number} {title}]({number}_{following}.ipynb)")


def _markdown(text: str) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        return
    if get_ipython() is not None:
        display(Markdown(text))


def given_values(namespace: dict) -> dict:
    """The parameter groups a notebook received (None means: not given, use the files)."""
    return {k: namespace[k] for k in params_mod.GROUPS if namespace.get(k) is not None}


def begin(name: str, namespace: dict) -> Stage:
    """Set up a stage from the notebook's parameter variables (see the module docstring)."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}")
    _setup_logging()
    redact.install()
    hints.install(name)

    # Validate everything before touching anything. A notebook given no parameters at all runs
    # the sandbox rehearsal's values: the safe default touches nothing outside this machine.
    given = given_values(namespace)
    if set(given) <= {"target"} and given.get("target", "sandbox") == "sandbox":
        values = params_mod.merged_values(params_mod.SANDBOX_FILE, [given])
    else:
        values = params_mod.merged_values(None, [given])
    params = params_mod.validate(values, "the notebook's parameters")

    from runbook_lib.target import connect

    target = connect(params)
    record = os.environ.get("RUNBOOK_RECORD_DIR")
    stage = Stage(name=name, params=params, target=target,
                  record_dir=Path(record) if record else None)
    number, title = STAGES[name]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    print(f"Stage {number} {title}: deployment {params.deployment_id}, started {now}")
    for line in target.describe():
        print(f"  {line}")
    return stage
