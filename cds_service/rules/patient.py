"""Readings about the patient and an order that several rules share: order date, age, body weight,
the dose-table row that applies, the order's dose, and whether the order is a new start.

Each is computed once per hook call (``RuleContext.memo``) from plain JSON, filtering on codes first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service.dose import DoseResult, compute_dose
from cds_service.record import Order, effective_date, parse_date, reference_to
from cds_service.rules.base import RuleContext
from cds_service.rules.dose_table import CHILD_UNDER_45KG, STANDARD, DoseRow, DoseTable, dose_table

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


def fmt_mg(value: float) -> str:
    """10.0 -> "10", 2.5 -> "2.5" (no trailing zeros in card texts)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def table(ctx: RuleContext) -> DoseTable:
    return dose_table(ctx.knowledge, ctx.options.dose_caps_version)


def order_date(ctx: RuleContext, order: Order) -> date:
    """The day the order is written for: authoredOn (dateWritten in DSTU2), else today."""
    resource = order.resource
    return parse_date(resource.get("authoredOn")) or parse_date(resource.get("dateWritten")) or ctx.today


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


def _weight_of(observation: Mapping[str, Any]) -> Weight | None:
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
        original=f"{fmt_mg(float(value))} {unit}",
    )


def latest_weight(ctx: RuleContext) -> Weight | None:
    """The most recent body weight with a unit we can convert (kg, g, [lb_av])."""

    def compute() -> Weight | None:
        matcher = ctx.knowledge.valueset("body-weight-observations")
        for observation in ctx.record.observations_in(matcher):
            weight = _weight_of(observation)
            if weight is not None:
                return weight
        return None

    return ctx.memo("weight", compute)


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


def band_for(ctx: RuleContext, order: Order) -> Band:
    def compute() -> Band:
        dose_rows = table(ctx)
        on = order_date(ctx, order)
        age = ctx.record.age_on(on)
        child = age is not None and age < dose_rows.child_age_below_years
        weight = latest_weight(ctx)
        weight_age = (on - weight.on).days if weight is not None and weight.on is not None else None
        fresh = (
            weight is not None and weight_age is not None and weight_age <= ctx.options.weight_max_age_days
        )
        row = STANDARD
        if child and fresh and weight is not None and weight.kg < dose_rows.child_weight_split_kg:
            row = CHILD_UNDER_45KG
        return Band(dose_rows.row(row), age, child, weight, fresh, weight_age)

    return ctx.memo(("band", id(order)), compute)


def dose_of(ctx: RuleContext, order: Order) -> DoseResult:
    return ctx.memo(
        ("dose", id(order)),
        lambda: compute_dose(
            order.resource,
            medication=order.facts.medication,
            max_lines=ctx.options.dose_max_lines,
            max_text_chars=ctx.options.dose_text_max_chars,
            max_order_chars=ctx.options.dose_order_text_max_chars,
        ),
    )


def previous_order(ctx: RuleContext, order: Order) -> Order | None:
    """The amifampridine order this one changes: its priorPrescription, else the newest current one."""
    current = ctx.current_amifampridine()
    prior = reference_to(order.resource.get("priorPrescription"))
    if prior:
        for candidate in current:
            if candidate.reference == prior:
                return candidate
    if not current:
        return None
    return max(current, key=lambda o: parse_date(o.resource.get("authoredOn")) or date.min)


def is_new_start(ctx: RuleContext, order: Order) -> bool:
    """No current amifampridine order: the patient starts, or restarts, the drug now.

    A priorPrescription naming an order that is no longer current (stopped, completed) is a restart:
    judged as a start, so that the starting dose is checked rather than nothing at all."""
    return not ctx.current_amifampridine()
