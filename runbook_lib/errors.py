"""The runbook's small error taxonomy.

Notebooks and the chain runner act on the kind of failure, not on its text: bad parameters are
fixed in the input, a timeout names the resource, its last state and the limit, a failure of the
target carries the target's own message, and a refusal says what the runbook will not touch and
why. Every message here is built to be safe to print: callers pass names and states, never a
secret value.
"""

from __future__ import annotations


class RunbookError(Exception):
    """Base of every error the runbook raises on purpose."""

    hint = ""


class ParameterError(RunbookError):
    """The parameters are wrong. Carries every problem found, so one run shows them all."""

    hint = "Fix the parameters file (or the overrides) and run again; nothing was created."

    def __init__(self, problems: list[str], source: str = "parameters"):
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} in {source}:\n{lines}")


class WaitTimeout(RunbookError):
    """A wait ran out of time."""

    hint = "Look at the resource named here; the limit is a parameter if it is simply slow."

    def __init__(self, resource: str, last_state: str, limit_s: float):
        self.resource = resource
        self.last_state = last_state
        self.limit_s = limit_s
        super().__init__(
            f"timed out after {limit_s:g} s waiting for {resource}; last state: {last_state}"
        )


class TargetError(RunbookError):
    """The target (AWS, Kubernetes, a command-line tool) reported a failure."""

    hint = "The message is the target's own; fix the cause there, then resume the run."


class Refusal(RunbookError):
    """The runbook refuses to act, for instance on a resource it did not create."""

    hint = "Nothing was changed. Read the reason; act by hand if you really mean it."
