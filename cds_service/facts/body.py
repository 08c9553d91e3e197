"""Body weight and the dose-table row that applies to a patient for an order, with why."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.dose.units import unit_words
from cds_service.facts.format import fmt_mg
from cds_service.knowledge.dose_table import CHILD_UNDER_45KG, STANDARD, DoseRow, DoseTable
from cds_service.record import effective_date

# UCUM codes and common unit strings -> kilograms per unit.
_KG_PER_UNIT = {
    "kg": 1.0,
    "kilogram": 1.0,
    "kilograms": 1.0,
    "g": 0.001,
    "gram": 0.001,
    "grams": 0.001,
    "[lb_av]": 0.45359237,
    "lb": 0.45359237,
    "lbs": 0.45359237,
    "pound": 0.45359237,
    "pounds": 0.45359237,
}


@dataclass(frozen=True)
class Weight:
    kg: float
    on: date | None
    resource: Mapping[str, Any]
    original: str  # as recorded, e.g. "132 [lb_av]"

    def describe(self) -> str:
        when = f" on {self.on.isoformat()}" if self.on else " (date not recorded)"
        shown = f"{self.kg:.1f} kg"
        if not self.original.endswith(" kg"):
            shown += f" (recorded as {self.original})"
        return shown + when


def weight_of(observation: Mapping[str, Any]) -> Weight | None:
    """A body weight Observation in kg, or None when its value or unit cannot be read."""
    quantity = observation.get("valueQuantity")
    if not isinstance(quantity, Mapping):
        return None
    value = quantity.get("value")
    unit = quantity.get("code") or quantity.get("unit")
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    factor = _KG_PER_UNIT.get(str(unit).strip().lower()) if unit else None
    if factor is None:
        factor = _KG_PER_UNIT.get(str(unit).strip()) if unit else None
    if factor is None:
        return None
    return Weight(
        kg=float(value) * factor,
        on=effective_date(observation),
        resource=observation,
        original=f"{fmt_mg(float(value))} {unit_words(str(unit))}",
    )


@dataclass(frozen=True)
class Band:
    """Which dose-table row applies to this patient for this order, and why."""

    row: DoseRow  # the row the caps are checked with (standard when a child's weight is unknown)
    age: int | None
    child: bool  # younger than the table's child age limit (False when age is unknown)
    weight: Weight | None
    weight_fresh: bool  # a child's weight recent enough to choose the row
    weight_age_days: int | None

    @property
    def weight_unknown(self) -> bool:
        return self.child and not self.weight_fresh

    def describe(self) -> str:
        if self.age is None:
            who = "age unknown (no birth date), adult dose row used"
        elif self.child:
            who = f"child of {self.age} years"
        else:
            who = f"adult of {self.age} years"
        if self.weight is not None:
            who += f", weight {self.weight.describe()}"
        elif self.child:
            who += ", no body weight recorded"
        return who


def band(table: DoseTable, on: date, age: int | None, weight: Weight | None, max_age_days: int) -> Band:
    """The row for a patient of ``age`` with ``weight``, for an order written ``on``."""
    child = age is not None and age < table.child_age_below_years
    weight_age = (on - weight.on).days if weight is not None and weight.on is not None else None
    fresh = weight is not None and weight_age is not None and weight_age <= max_age_days
    row = STANDARD
    if child and fresh and weight is not None and weight.kg < table.child_weight_split_kg:
        row = CHILD_UNDER_45KG
    return Band(table.row(row), age, child, weight, fresh, weight_age)
