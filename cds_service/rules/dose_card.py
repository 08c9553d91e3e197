"""One dose card per amifampridine order, with one fix that satisfies every dose rule at once (issue 17).

The dose rules judge one limit each (single and daily caps, the initial range of a new start, the lowest
start for renal, hepatic or NAT2, the titration step). Shown apart, one order gave up to five cards
repeating the same arithmetic, and each card's fix satisfied only its own rule. Here, after the rules
have run, the dose problems of one order become ONE finding:

- its topic is the most severe problem: critical before warning, then ``lead_order`` of
  ``cards/dose-card.yaml``; the others are listed on the card and in its topics (``Finding.covers``);
- its one suggestion is the regimen closest to the order that every applicable limit allows
  (``suggest.coherent_regimen``), so signing it raises no dose card again.

Not a rule: it reads the rules' findings and the facts, never another rule; ``--explain`` still shows each
rule's own findings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cds_service.dose import DoseResult
from cds_service.knowledge.dose_table import Regimen
from cds_service.record import Order
from cds_service.rules.base import Finding, RuleContext, Suggestion
from cds_service.rules.suggest import coherent_regimen, order_unit, regimen_words, update_suggestion

TABLE = "dose-card"
CAP_TOPICS = ("dose-single-max", "dose-daily-max")
DOSE_TOPICS = (*CAP_TOPICS, "starting-dose", "titration-step")
# These cards are about a condition; they are a dose problem when they ask a new start to begin lower.
LOWEST_START_TOPICS = ("renal-impairment", "hepatic-impairment", "nat2-poor-metabolizer")
# The label of the fix, by the card's topic (its topic's ``suggestions:``).
_FIX_LABEL = {
    "starting-dose": "initial-range",
    "titration-step": "step",
    **{topic: "lowest-start" for topic in LOWEST_START_TOPICS},
}
_INDICATOR_RANK = {"critical": 0, "warning": 1, "info": 2}
_EPSILON = 1e-9
_SUSPENSION_STEP_MG = 1.0  # 1 mL of the 1 mg/mL suspension (label §2.1)


def is_dose_problem(ctx: RuleContext, finding: Finding) -> bool:
    """Whether a finding is a problem with the dose of its amifampridine order."""
    if finding.order is None or finding.topic in ctx.knowledge.disabled_topics:
        return False
    if finding.topic in DOSE_TOPICS:
        return True
    if finding.topic not in LOWEST_START_TOPICS or finding.variant is not None:
        return False  # the end-stage renal card says there is no dose to give: a card of its own
    facts = ctx.facts.order(finding.order)
    dose = facts.dose
    above_lowest = (dose.mg_per_day or 0) > facts.band.row.initial_low_mg + _EPSILON
    return facts.new_start and (not dose.ok or above_lowest)


def one_dose_card_per_order(ctx: RuleContext, findings: Sequence[Finding]) -> list[Finding]:
    """The findings with the dose problems of each order merged into one, at the first one's place."""
    groups: dict[int, list[Finding]] = {}
    for finding in findings:
        if is_dose_problem(ctx, finding):
            groups.setdefault(id(finding.order), []).append(finding)
    if not groups:
        return list(findings)
    merged: list[Finding] = []
    for finding in findings:
        group = groups.get(id(finding.order)) if is_dose_problem(ctx, finding) else None
        if group is None:
            merged.append(finding)
        elif finding is group[0]:
            merged.append(_dose_card(ctx, group))
    return merged


def _by_severity(ctx: RuleContext, group: Sequence[Finding]) -> list[Finding]:
    """Most severe first: critical before warning (the indicator in force), then ``lead_order``."""
    order = list(ctx.knowledge.data[TABLE]["lead_order"])

    def severity(finding: Finding) -> tuple[int, int]:
        indicator = ctx.knowledge.topic(finding.topic).variant(finding.variant).indicator
        rank = order.index(finding.topic) if finding.topic in order else len(order)
        return _INDICATOR_RANK.get(indicator, 3), rank

    return sorted(group, key=severity)


def _dose_card(ctx: RuleContext, group: Sequence[Finding]) -> Finding:
    lead, *rest = _by_severity(ctx, group)
    others = tuple(rest)
    assert lead.order is not None  # is_dose_problem
    fix = coherent_fix(ctx, lead.order, lead.topic)
    ctx.note(
        "dose-card",
        f"{lead.order.reference}: one card for {', '.join(f.topic for f in group)}"
        + (f"; fix {fix.label}" if fix else "; no change to suggest"),
    )
    return dataclasses.replace(
        lead,
        covers=tuple(f.topic for f in others),
        also=others,
        suggestions=(fix,) if fix else (),
    )


def dose_limits(ctx: RuleContext, order: Order) -> tuple[float, float, tuple[Regimen, ...]]:
    """(largest single dose, largest daily dose, the table's regimens to fall back on) that every dose rule
    allows this order: the caps of its row, the initial range of a new start (the lowest initial dose
    when renal, hepatic or NAT2 asks for it), one titration step above the current dose."""
    facts = ctx.facts.order(order)
    row = facts.band.row
    daily = row.max_daily_mg
    fallbacks: tuple[Regimen, ...] = ()
    if facts.new_start:
        if facts.lowest_start_reasons:
            daily, fallbacks = min(daily, row.initial_low_mg), (row.lowest_start,)
        else:
            daily, fallbacks = min(daily, row.initial_high_mg), (row.initial_high, row.lowest_start)
    elif facts.previous is not None:
        before = ctx.facts.order(facts.previous).dose
        if before.ok and before.mg_per_day is not None:
            daily = min(daily, max(before.mg_per_day, 0) + row.titration_step_mg)
    return row.max_single_mg, daily, fallbacks


def _unchanged(dose: DoseResult, regimen: Regimen) -> bool:
    return (
        dose.ok
        and abs((dose.mg_per_dose or 0) - regimen.mg_per_dose) < _EPSILON
        and abs((dose.doses_per_day or 0) - regimen.times_per_day) < _EPSILON
    )


def coherent_fix(ctx: RuleContext, order: Order, topic: str) -> Suggestion | None:
    """One update of ``order`` that satisfies every dose limit at once, labelled in ``topic``'s words;
    None when no regimen fits or the order already is that regimen."""
    facts = ctx.facts.order(order)
    dose = facts.dose
    row = facts.band.row
    max_single, max_daily, fallbacks = dose_limits(ctx, order)
    unit = order_unit(order.resource, dose)
    # Half tablets (or the order's own unit) and the table's rounding step first; 1 mg steps of the 1 mg/mL
    # suspension only when no coarser dose fits (a small current dose, a child's lowest start).
    grids = ((unit.grid_mg, row.rounding_mg) if unit else (row.rounding_mg,), (_SUSPENSION_STEP_MG,))
    regimen = coherent_regimen(
        dose, max_single=max_single, max_daily=max_daily, grids=grids, fallbacks=fallbacks
    )
    if regimen is None or _unchanged(dose, regimen):
        return None
    words = ctx.knowledge.topic(topic)
    if topic in CAP_TOPICS:
        same_day = dose.ok and abs((dose.mg_per_day or 0) - regimen.mg_per_day) < _EPSILON
        key = "split" if same_day else "reduce"
    else:
        key = _FIX_LABEL[topic]
    label = words.label(key, regimen=regimen_words(regimen, unit))
    return update_suggestion(ctx, order, regimen, label, dose)
