"""The value objects the rules receive, and the reason codes with their plain-language meaning."""

from __future__ import annotations

from dataclasses import dataclass

# Reason code -> the sentence a card can show when no more specific detail is known.
# Documented for pharmacists in docs/dose-arithmetic.md; keep the two in step.
REASONS: dict[str, str] = {
    "invalid-request": "The order is not a FHIR resource (not a JSON object).",
    "not-a-medication-request": "The resource is not a MedicationRequest or MedicationOrder.",
    "no-dosage": "The order has no dosage instructions.",
    "no-dose": "The order does not say how much to take per dose.",
    "unparseable-text": "The dose is written only as free text, and the text could not be read.",
    "unknown-unit": "The dose unit cannot be converted to milligrams.",
    "unknown-strength": "The dose is a count of a product whose strength is not known.",
    "no-frequency": "The order does not say how often the dose is taken.",
    "conflicting-entries": (
        "The order states the dose or its frequency more than once, and the statements disagree."
    ),
    "invalid-value": "A number in the dosage is missing, not a number, zero or negative.",
    "too-many-dosage-lines": "The order has more dosage instructions than this service reads.",
    "too-much-dose-text": "The order's dosage texts are longer than this service reads for one order.",
    "internal-error": "The dose could not be worked out because of an unexpected problem in this service.",
}


@dataclass(frozen=True)
class DosePhase:
    """One dosing phase: all dosage instructions sharing a ``sequence`` (they run at the same time)."""

    sequence: int | str | None
    ok: bool
    mg_per_dose: float | None
    mg_per_day: float | None
    doses_per_day: float | None
    source: str
    assumptions: tuple[str, ...]
    arithmetic: str
    reason: str | None = None
    reason_text: str | None = None


@dataclass(frozen=True)
class DoseResult:
    """How many mg per dose and per day an order asks for, or precisely why that is unknown."""

    ok: bool
    mg_per_dose: float | None  # the largest single dose, mg
    mg_per_day: float | None  # the largest daily amount, mg (over all phases)
    doses_per_day: float | None  # of the phase giving mg_per_day
    source: str  # "coded", or "text" when any part was read from free text
    assumptions: tuple[str, ...]
    arithmetic: str
    reason: str | None
    reason_text: str | None
    phases: tuple[DosePhase, ...] = ()

    @classmethod
    def failure(
        cls, reason: str, detail: str | None = None, *, phases: tuple[DosePhase, ...] = ()
    ) -> DoseResult:
        """A not-ok result; ``detail`` defaults to the reason's generic sentence."""
        return cls(
            ok=False,
            mg_per_dose=None,
            mg_per_day=None,
            doses_per_day=None,
            source="text" if any(p.source == "text" for p in phases) else "coded",
            assumptions=(),
            arithmetic="",
            reason=reason,
            reason_text=detail or REASONS.get(reason, reason),
            phases=phases,
        )
