"""Body weight needed: a child's weight-based caps cannot be checked without a recent weight (§2.1).

The card says what applies either way (under 45 kg, or 45 kg and more) and where this order stands
against each row. Adults use the first row whatever their weight, so they never get this card.
"""

from __future__ import annotations

from cds_service.facts import fmt_mg
from cds_service.knowledge.dose_table import CHILD_UNDER_45KG, STANDARD, DoseRow
from cds_service.rules.base import Finding, RuleContext, rule

TOPIC = "weight-needed"


def _row_words(row: DoseRow) -> str:
    return (
        f"single dose up to {fmt_mg(row.max_single_mg)} mg, up to {fmt_mg(row.max_daily_mg)} mg/day, "
        f"start {fmt_mg(row.initial_low_mg)}–{fmt_mg(row.initial_high_mg)} mg/day, "
        f"steps of {fmt_mg(row.titration_step_mg)} mg/day"
    )


def _against(row: DoseRow, mg_per_dose: float, mg_per_day: float) -> str:
    over = []
    if mg_per_dose > row.max_single_mg:
        over.append(f"single dose above {fmt_mg(row.max_single_mg)} mg")
    if mg_per_day > row.max_daily_mg:
        over.append(f"daily dose above {fmt_mg(row.max_daily_mg)} mg")
    return "too high: " + " and ".join(over) if over else "within the caps"


@rule(
    TOPIC,
    check="weight-based dose caps for children",
    reads=("patient", "weight"),
    valuesets=("body-weight-observations",),
    tables=("dose-caps",),
)
def weight_needed(ctx: RuleContext) -> list[Finding]:
    findings = []
    facts = ctx.facts
    rows = facts.table
    for order in facts.amifampridine_orders:
        band = facts.order(order).band
        if not band.weight_unknown:
            continue
        if band.weight is None:
            weight = "No body weight is recorded"
        else:
            days = (
                f"{band.weight_age_days} days before the order"
                if band.weight_age_days is not None
                else "undated"
            )
            weight = (
                f"The latest body weight, {band.weight.describe()}, is {days} — older than the "
                f"{ctx.options.weight_max_age_days} days this service accepts for a child"
            )
        small, large = rows.row(CHILD_UNDER_45KG), rows.row(STANDARD)
        dose = facts.order(order).dose
        if dose.ok and dose.mg_per_dose is not None and dose.mg_per_day is not None:
            split = fmt_mg(rows.child_weight_split_kg)
            below = _against(small, dose.mg_per_dose, dose.mg_per_day)
            above = _against(large, dose.mg_per_dose, dose.mg_per_day)
            standing = (
                f"This order ({dose.arithmetic}) would be {below} for a child under {split} kg, "
                f"and {above} at {split} kg or more."
            )
        else:
            standing = "The dose of this order could not be worked out either."
        ctx.note(TOPIC, f"child of {band.age}: weight missing or stale")
        findings.append(
            Finding(
                topic=TOPIC,
                params={
                    "drug": order.name,
                    "age": band.age,
                    "weight": weight,
                    "split": fmt_mg(rows.child_weight_split_kg),
                    "under": _row_words(small),
                    "over": _row_words(large),
                    "standing": standing,
                    "max_age_days": ctx.options.weight_max_age_days,
                },
                order=order,
            )
        )
    return findings
