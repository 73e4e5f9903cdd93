"""What a step did to one resource: created, found, updated, skipped, deleted, absent, refused.

Every idempotent step returns :class:`Outcome` records so that notebooks show, and the record
keeps, whether each resource was created or already there. Nothing here may hold a secret.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ACTIONS = ("created", "found", "updated", "skipped", "deleted", "absent", "refused", "waited")


@dataclass
class Outcome:
    """One resource and what the step did to it."""

    kind: str
    name: str
    action: str
    id: str = ""
    detail: str = ""
    outputs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; expected one of {ACTIONS}")

    def line(self) -> str:
        """One human line, e.g. ``created  RDS instance dbos-app-pg (db-123): available``."""
        ident = f" ({self.id})" if self.id and self.id != self.name else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.action:<8} {self.kind} {self.name}{ident}{detail}"

    def as_dict(self) -> dict:
        return asdict(self)


def table(outcomes: list[Outcome]) -> str:
    """A plain-text table of outcomes, one line each, for notebooks and logs."""
    return "\n".join(o.line() for o in outcomes) if outcomes else "(nothing to do)"


class _Printed:
    """Mixin for results a step has already printed: a notebook does not show them twice."""

    def _ipython_display_(self) -> None:
        pass


class Outcomes(_Printed, list):
    """The outcomes of a step, already printed as a table."""

    def __repr__(self) -> str:
        return table(list(self))


class Report(_Printed, dict):
    """A step's findings, already printed."""


class Text(_Printed, str):
    """Text a step has already printed (logs, a check's report)."""
