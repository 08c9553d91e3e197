"""Co-medication with amifampridine, both ways (label §5.1, §7.1, §7.2).

- ``seizure-threshold-drug``: a drug that lowers the seizure threshold;
- ``cholinergic-drug``: a cholinesterase inhibitor or direct cholinergic agonist (often intended in LEMS);
- ``aminopyridine-duplicate``: dalfampridine with amifampridine, or two amifampridine drafts at once.

A pair is judged when either side is an order in question: an amifampridine draft meets an active or
co-drafted co-drug, or a co-drug draft meets an active or co-drafted amifampridine order (the reverse
direction gets the same card). One card per co-drug order; a draft co-drug gets a ``delete`` suggestion.
An active amifampridine order plus a new amifampridine draft is a dose change, not a duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable

from cds_service.knowledge.classify import (
    CHOLINERGIC,
    OTHER_AMINOPYRIDINE,
    SEIZURE_THRESHOLD,
    matched_name,
)
from cds_service.record import Order, parse_date
from cds_service.rules.base import Finding, RuleContext, Suggestion, rule
from cds_service.rules.suggest import delete_suggestion

SEIZURE_TOPIC = "seizure-threshold-drug"
CHOLINERGIC_TOPIC = "cholinergic-drug"
DUPLICATE_TOPIC = "aminopyridine-duplicate"


def _status(order: Order) -> str:
    if order.draft:
        return "drafted in this order session"
    since = parse_date(order.resource.get("authoredOn"))
    return f"active prescription since {since.isoformat()}" if since else "active prescription"


def _pairs(ctx: RuleContext, drug_class: str) -> Iterable[tuple[Order, Order, Order]]:
    """(amifampridine order, co-drug order, the order in question the card is about), once per co-drug."""
    in_question = {id(o) for o in ctx.orders}
    amifampridine = ctx.facts.concurrent_amifampridine
    asked = [a for a in amifampridine if id(a) in in_question]
    co_drugs = [o for o in [*ctx.record.current_orders, *ctx.drafts] if o.is_(drug_class)]
    for co_drug in co_drugs:
        if asked:
            yield asked[0], co_drug, asked[0]
        elif id(co_drug) in in_question and amifampridine:
            yield amifampridine[0], co_drug, co_drug


def _finding(
    ctx: RuleContext, topic: str, drug_class: str, amif: Order, co_drug: Order, about: Order
) -> Finding:
    ingredient = matched_name(co_drug.facts, ctx.knowledge, drug_class) or co_drug.name
    reverse = about is co_drug
    suggestions: tuple[Suggestion, ...] = ()
    if co_drug.draft:
        suggestions = (delete_suggestion(co_drug, f"Do not order {ingredient}"),)
    ctx.note(topic, f"{amif.reference} with {co_drug.reference} ({ingredient}); card on {about.reference}")
    return Finding(
        topic=topic,
        params={
            "drug": amif.name,
            "drug_status": _status(amif),
            "other": co_drug.name,
            "ingredient": ingredient,
            "other_status": _status(co_drug),
            "direction": (
                f"This order for {co_drug.name} is for a patient with amifampridine ({_status(amif)})."
                if reverse
                else f"This order for {amif.name} meets {co_drug.name} ({_status(co_drug)})."
            ),
        },
        order=about,
        suggestions=suggestions,
    )


def _class_rule(ctx: RuleContext, topic: str, drug_class: str) -> list[Finding]:
    return [_finding(ctx, topic, drug_class, a, c, about) for a, c, about in _pairs(ctx, drug_class)]


@rule(
    SEIZURE_TOPIC,
    check="co-medication that lowers the seizure threshold",
    reads=("medications",),
    valuesets=("seizure-threshold-lowering-drugs",),
)
def seizure_threshold_drug(ctx: RuleContext) -> list[Finding]:
    return _class_rule(ctx, SEIZURE_TOPIC, SEIZURE_THRESHOLD)


@rule(
    CHOLINERGIC_TOPIC,
    check="cholinergic co-medication",
    reads=("medications",),
    valuesets=("cholinergic-drugs",),
)
def cholinergic_drug(ctx: RuleContext) -> list[Finding]:
    return _class_rule(ctx, CHOLINERGIC_TOPIC, CHOLINERGIC)


@rule(
    DUPLICATE_TOPIC,
    check="duplicate aminopyridine therapy",
    reads=("medications",),
    valuesets=("amifampridine", "other-aminopyridines"),
)
def aminopyridine_duplicate(ctx: RuleContext) -> list[Finding]:
    findings = _class_rule(ctx, DUPLICATE_TOPIC, OTHER_AMINOPYRIDINE)
    drafts = ctx.facts.drafted_amifampridine
    asked = [d for d in drafts if any(d is o for o in ctx.orders)]
    if len(drafts) >= 2 and asked:
        about = asked[0]
        others = [d for d in drafts if d is not about]
        ctx.note(DUPLICATE_TOPIC, f"{len(drafts)} amifampridine drafts in one order session")
        findings.append(
            Finding(
                topic=DUPLICATE_TOPIC,
                params={
                    "drug": about.name,
                    "drug_status": _status(about),
                    "other": "; ".join(o.name for o in others),
                    "ingredient": "a second amifampridine order",
                    "other_status": _status(others[0]),
                    "direction": f"{len(drafts)} amifampridine orders are drafted together.",
                },
                order=about,
                suggestions=tuple(
                    delete_suggestion(o, f"Keep one amifampridine order: remove {o.reference}")
                    for o in others
                ),
            )
        )
    return findings
