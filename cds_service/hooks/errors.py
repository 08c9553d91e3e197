"""Errors of the CDS Hooks model, one root (``CdsError``); the HTTP layer answers each with its status and
a JSON OperationOutcome.

Every 4xx/5xx body is a FHIR OperationOutcome: EHR integration engineers read it in their logs, and it
never holds a stack trace, a token or patient data.
"""

from __future__ import annotations

from typing import Any

# HTTP status -> OperationOutcome.issue.code (http://hl7.org/fhir/issue-type)
_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    412: "incomplete",
    413: "too-long",
    414: "too-long",
    415: "not-supported",
    417: "not-supported",
    429: "throttled",
    431: "too-long",
    500: "exception",
    501: "not-supported",
    503: "transient",
}


def operation_outcome(
    diagnostics: str, *, status: int = 400, expression: list[str] | None = None
) -> dict[str, Any]:
    """Build a FHIR OperationOutcome with one error issue."""
    issue: dict[str, Any] = {
        "severity": "error",
        "code": _ISSUE_CODES.get(status, "processing"),
        "diagnostics": diagnostics,
    }
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class CdsError(Exception):
    """A request the service answers with ``status`` and an OperationOutcome naming the problem."""

    def __init__(
        self,
        status: int,
        diagnostics: str,
        *,
        expression: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics
        self.expression = expression
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return operation_outcome(self.diagnostics, status=self.status, expression=self.expression)


class InvalidRequest(CdsError):
    """400: the request body does not have the shape the hook requires."""

    def __init__(self, diagnostics: str, field: str | None = None) -> None:
        super().__init__(400, diagnostics, expression=[field] if field else None)


class PreconditionFailed(CdsError):
    """412: data the checks need could be had neither from prefetch nor from the FHIR server."""

    def __init__(self, diagnostics: str, missing: list[str]) -> None:
        super().__init__(412, diagnostics, expression=[f"prefetch.{key}" for key in missing])
