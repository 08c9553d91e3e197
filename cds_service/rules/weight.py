"""Body weight needed: a child's weight-based caps cannot be checked without a recent weight (§2.1).

The card says what applies either way (under 45 kg, or 45 kg and more) and where this order stands
against each row. Adults use the first row whatever their weight, so they never get this card.
"""

from __future__ import annotations

from cds_service.facts import fmt_mg
from cds_service.knowledge.dose_table import CHILD_UNDER_45KG, STANDARD, DoseRow
from cds_service.knowledge.loader import TopicDefinition
from cds_service.rules.base import Finding, RuleContext, rule

TOPIC = "weight-needed"


def _row_words(words: TopicDefinition, row: DoseRow) -> str:
    return words.say(
        "row",
        max_single=fmt_mg(row.max_single_mg),
        max_daily=fmt_mg(row.max_daily_mg),
        low=fmt_mg(row.initial_low_mg),
        high=fmt_mg(row.initial_high_mg),
        step=fmt_mg(row.titration_step_mg),
    )


def _against(words: TopicDefinition, row: DoseRow, mg_per_dose: float, mg_per_day: float) -> str:
    over = []
    if mg_per_dose > row.max_single_mg:
        over.append(words.say("single-above", cap=fmt_mg(row.max_single_mg)))
    if mg_per_day > row.max_daily_mg:
        over.append(words.say("daily-above", cap=fmt_mg(row.max_daily_mg)))
    return words.say("too-high", what=" and ".join(over)) if over else words.say("within-caps")


@rule(
    TOPIC,
    check="weight-based dose caps for children",
    reads=("patient", "weight"),
    valuesets=("body-weight-observations",),
    tables=("dose-caps",),
    sentences=(
        "no-weight",
        "stale-weight",
        "days-before",
        "undated",
        "row",
        "standing",
        "standing-unknown",
        "within-caps",
        "too-high",
        "single-above",
        "daily-above",
    ),
)
def weight_needed(ctx: RuleContext) -> list[Finding]:
    findings = []
    facts = ctx.facts
    rows = facts.table
    words = ctx.knowledge.topic(TOPIC)
    max_age_days = ctx.options.weight_max_age_days
    split = fmt_mg(rows.child_weight_split_kg)
    for order in facts.amifampridine_orders:
        band = facts.order(order).band
        if not band.weight_unknown:
            continue
        if band.weight is None:
            weight = words.say("no-weight")
        else:
            days = (
                words.say("days-before", count=band.weight_age_days)
                if band.weight_age_days is not None
                else words.say("undated")
            )
            weight = words.say(
                "stale-weight", latest=band.weight.describe(), days=days, max_age_days=max_age_days
            )
        small, large = rows.row(CHILD_UNDER_45KG), rows.row(STANDARD)
        dose = facts.order(order).dose
        if dose.ok and dose.mg_per_dose is not None and dose.mg_per_day is not None:
            standing = words.say(
                "standing",
                arithmetic=dose.arithmetic,
                below=_against(words, small, dose.mg_per_dose, dose.mg_per_day),
                above=_against(words, large, dose.mg_per_dose, dose.mg_per_day),
                split=split,
            )
        else:
            standing = words.say("standing-unknown")
        ctx.note(TOPIC, f"child of {band.age}: weight missing or stale")
        findings.append(
            Finding(
                topic=TOPIC,
                params={
                    "drug": order.name,
                    "age": band.age,
                    "weight": weight,
                    "split": split,
                    "under": _row_words(words, small),
                    "over": _row_words(words, large),
                    "standing": standing,
                    "max_age_days": max_age_days,
                },
                order=order,
            )
        )
    return findings
