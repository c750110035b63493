"""Errors that become OperationOutcomes. Every 4xx/5xx body the server sends is built here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class OutcomeIssue:
    severity: str
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: Iterable[OutcomeIssue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


@dataclass
class FHIRError(Exception):
    """An error answered to the client with `status` and an OperationOutcome."""

    status: int
    diagnostics: str
    code: str = "processing"
    severity: str = "error"
    expression: Sequence[str] = ()
    extra_issues: list[OutcomeIssue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)

    @property
    def issues(self) -> list[OutcomeIssue]:
        first = OutcomeIssue(self.severity, self.code, self.diagnostics, tuple(self.expression))
        return [first, *self.extra_issues]

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def not_found(resource_type: str, rid: str) -> FHIRError:
    return FHIRError(404, f"{resource_type}/{rid} is not known", code="not-found")


def gone(resource_type: str, rid: str, version: int) -> FHIRError:
    return FHIRError(410, f"{resource_type}/{rid} was deleted (version {version})", code="deleted")


def invalid(diagnostics: str, status: int = 400, expression: Sequence[str] = ()) -> FHIRError:
    return FHIRError(status, diagnostics, code="invalid", expression=expression)


def precondition_failed(diagnostics: str) -> FHIRError:
    return FHIRError(412, diagnostics, code="conflict")


def conflict(diagnostics: str) -> FHIRError:
    return FHIRError(409, diagnostics, code="conflict")
