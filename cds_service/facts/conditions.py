"""How a Condition is described on a card: when it began and, once over, when it ended."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.dose.units import unit_words
from cds_service.facts.format import fmt_mg

# Clinical statuses that mean the condition is present: an abatement beside them is not shown as its end.
_PRESENT = frozenset({"active", "recurrence", "relapse"})
_MAX_TEXT = 60  # an abatementString is free text: shown, but never at any length


def onset(condition: Mapping[str, Any]) -> str | None:
    """The day the condition began (onsetDateTime, else the day it was recorded), or None."""
    value = condition.get("onsetDateTime") or condition.get("recordedDate")
    return value[:10] if isinstance(value, str) and value.strip() else None


def abatement(condition: Mapping[str, Any], status: str | None) -> str | None:
    """When a resolved (or inactive, in remission) condition ended, as written: "2019-03-01" from
    abatementDateTime or abatementPeriod, "age 12 a" from abatementAge, or abatementString as text.
    None when the condition is still present or no abatement is recorded."""
    if status in _PRESENT:
        return None
    when = condition.get("abatementDateTime")
    if isinstance(when, str) and when.strip():
        return when[:10]
    period = condition.get("abatementPeriod")
    if isinstance(period, Mapping):
        end = period.get("end") or period.get("start")
        if isinstance(end, str) and end.strip():
            return end[:10]
    age = condition.get("abatementAge")
    if isinstance(age, Mapping) and isinstance(age.get("value"), int | float):
        unit = str(age.get("unit") or age.get("code") or "years")
        return f"at age {fmt_mg(float(age['value']))} {unit_words(unit)}"
    text = condition.get("abatementString")
    if isinstance(text, str) and text.strip():
        text = " ".join(text.split())
        return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"
    if condition.get("abatementBoolean") is True:
        return ""  # ended, when not recorded
    return None
