"""Dose checks against label Table 1 (§2.1), with the caps of the pinned label version.

- ``dose-unverifiable``: the dose or frequency of the order cannot be worked out;
- ``dose-single-max`` / ``dose-daily-max`` (critical): above the row's caps;
- ``starting-dose``: a new start above the initial range, unless a lowest-start card speaks for it;
- ``titration-step``: the daily dose rises more than one step over the current order.

The problems of one order become one card with one fix that satisfies them all (``rules.dose_card``): the
rules here only find; the suggestion labels they declare are the ones that card uses.

A child whose weight is unknown is checked against the adult row (only what is certainly too high);
the weight-needed card says what the under-45 kg row would mean.
"""

from __future__ import annotations

from cds_service.dose import DoseResult
from cds_service.facts import fmt_mg
from cds_service.record import Order
from cds_service.rules.base import Finding, RuleContext, rule

_EPSILON = 1e-9


def _arithmetic(ctx: RuleContext, topic: str, dose: DoseResult) -> str:
    """The dose arithmetic, then what the reading assumed (in the topic's words)."""
    if not dose.assumptions:
        return dose.arithmetic
    assumed = ctx.knowledge.topic(topic).say("assumed", assumptions="; ".join(dose.assumptions))
    return f"{dose.arithmetic}. {assumed}"  # the arithmetic is a sentence of its own: end it first


def _common(ctx: RuleContext, topic: str, order: Order, dose: DoseResult) -> dict[str, object]:
    band = ctx.facts.order(order).band
    return {
        "drug": order.name,
        "mg_per_dose": fmt_mg(dose.mg_per_dose or 0),
        "mg_per_day": fmt_mg(dose.mg_per_day or 0),
        "arithmetic": _arithmetic(ctx, topic, dose),
        "patient": band.describe(),
        "row": band.row.words,
        "label_version": ctx.facts.table.label,
    }


def _computed(ctx: RuleContext) -> list[tuple[Order, DoseResult]]:
    pairs = []
    for order in ctx.facts.amifampridine_orders:
        dose = ctx.facts.order(order).dose
        if dose.ok and dose.mg_per_dose is not None and dose.mg_per_day is not None:
            pairs.append((order, dose))
    return pairs


@rule("dose-unverifiable", check="dose arithmetic", tables=("dose-caps",), sentences=("reason-unknown",))
def dose_unverifiable(ctx: RuleContext) -> list[Finding]:
    findings = []
    for order in ctx.facts.amifampridine_orders:
        dose = ctx.facts.order(order).dose
        if dose.ok:
            ctx.note("dose", f"{order.reference}: {dose.arithmetic}")
            continue
        ctx.note("dose-unverifiable", f"{order.reference}: {dose.reason}")
        row = ctx.facts.order(order).band.row
        findings.append(
            Finding(
                topic="dose-unverifiable",
                params={
                    "drug": order.name,
                    "reason": (
                        dose.reason_text
                        or dose.reason
                        or ctx.knowledge.topic("dose-unverifiable").say("reason-unknown")
                    ),
                    "max_single": fmt_mg(row.max_single_mg),
                    "max_daily": fmt_mg(row.max_daily_mg),
                    "row": row.words,
                },
                order=order,
            )
        )
    return findings


def _over_cap(ctx: RuleContext, topic: str, per: str) -> list[Finding]:
    """Orders whose dose ``per`` ("dose" or "day") is above the cap of their Table 1 row."""
    findings = []
    for order, dose in _computed(ctx):
        row = ctx.facts.order(order).band.row
        amount, cap = (
            (dose.mg_per_dose, row.max_single_mg) if per == "dose" else (dose.mg_per_day, row.max_daily_mg)
        )
        if (amount or 0) <= cap + _EPSILON:
            continue
        params = _common(ctx, topic, order, dose) | {"cap": fmt_mg(cap)}
        findings.append(Finding(topic, params, order=order))
    return findings


@rule(
    "dose-single-max",
    check="maximum single dose",
    tables=("dose-caps",),
    sentences=("assumed",),
    suggestions=("split", "reduce"),
)
def dose_single_max(ctx: RuleContext) -> list[Finding]:
    return _over_cap(ctx, "dose-single-max", per="dose")


@rule(
    "dose-daily-max",
    check="maximum daily dose",
    tables=("dose-caps",),
    sentences=("assumed",),
    suggestions=("split", "reduce"),
)
def dose_daily_max(ctx: RuleContext) -> list[Finding]:
    return _over_cap(ctx, "dose-daily-max", per="day")


# The starting dose stays silent when a renal, hepatic or NAT2 card carries the lowest start: it reads
# those facts, and so the value sets and tables behind them.
@rule(
    "starting-dose",
    check="starting dose of a new start",
    reads=("medications",),
    valuesets=(
        "renal-function-observations",
        "kidney-conditions",
        "end-stage-renal-disease",
        "liver-conditions",
        "nat2-observations",
    ),
    tables=("dose-caps", "nat2"),
    sentences=("assumed",),
    suggestions=("initial-range",),
)
def starting_dose(ctx: RuleContext) -> list[Finding]:
    findings = []
    for order, dose in _computed(ctx):
        facts = ctx.facts.order(order)
        if not facts.new_start:
            continue
        row = facts.band.row
        if (dose.mg_per_day or 0) <= row.initial_high_mg + _EPSILON:
            continue
        reasons = facts.lowest_start_reasons
        if reasons:
            ctx.note(
                "starting-dose", f"left to the {', '.join(reasons)} card(s), which carry the lowest start"
            )
            continue
        params = _common(ctx, "starting-dose", order, dose) | {
            "initial_low": fmt_mg(row.initial_low_mg),
            "initial_high": fmt_mg(row.initial_high_mg),
            "step": fmt_mg(row.titration_step_mg),
        }
        findings.append(Finding("starting-dose", params, order=order))
    return findings


@rule(
    "titration-step",
    check="titration step",
    reads=("medications",),
    tables=("dose-caps",),
    variants=("previous-dose-unknown",),
    sentences=("assumed", "previous-dose-unreadable"),
    suggestions=("step",),
)
def titration_step(ctx: RuleContext) -> list[Finding]:
    findings = []
    for order, dose in _computed(ctx):
        facts = ctx.facts.order(order)
        previous = facts.previous
        if previous is None:
            continue
        before = ctx.facts.order(previous).dose
        row = facts.band.row
        params = _common(ctx, "titration-step", order, dose) | {
            "previous": previous.name,
            "previous_reference": previous.reference,
            "step": fmt_mg(row.titration_step_mg),
        }
        if not before.ok or before.mg_per_day is None:
            # The step cannot be judged: say so on the card rather than only in the explain output.
            ctx.note("titration-step", f"{previous.reference}: current dose unknown ({before.reason})")
            words = ctx.knowledge.topic("titration-step")
            params["why"] = before.reason_text or words.say("previous-dose-unreadable")
            findings.append(Finding("titration-step", params, order=order, variant="previous-dose-unknown"))
            continue
        rise = (dose.mg_per_day or 0) - before.mg_per_day
        if rise <= row.titration_step_mg + _EPSILON:
            ctx.note("titration-step", f"rise {fmt_mg(rise)} mg/day within {fmt_mg(row.titration_step_mg)}")
            continue
        params |= {
            "previous_mg_per_day": fmt_mg(before.mg_per_day),
            "previous_arithmetic": before.arithmetic,
            "rise": fmt_mg(rise),
            "target": fmt_mg(before.mg_per_day + row.titration_step_mg),
        }
        findings.append(Finding("titration-step", params, order=order))
    return findings
