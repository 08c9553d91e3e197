"""Co-medication with amifampridine, both ways (label §5.1, §7.1, §7.2).

- ``seizure-threshold-drug``: a drug that lowers the seizure threshold;
- ``cholinergic-drug``: a cholinesterase inhibitor or direct cholinergic agonist (often intended in LEMS);
- ``aminopyridine-duplicate``: dalfampridine with amifampridine, or two amifampridine drafts at once.

A pair is judged when either side is an order in question: an amifampridine draft meets an active or
co-drafted co-drug, or a co-drug draft meets an active or co-drafted amifampridine order (the reverse
direction gets the same card). One card per topic per amifampridine order, listing every co-drug order
(renewals of one drug merged, each with its status); a draft co-drug gets a ``delete`` suggestion.
An active amifampridine order plus a new amifampridine draft is a dose change, not a duplicate.
"""

from __future__ import annotations

from cds_service.facts import fmt_mg
from cds_service.knowledge.classify import (
    CHOLINERGIC,
    OTHER_AMINOPYRIDINE,
    SEIZURE_THRESHOLD,
    matched_name,
)
from cds_service.knowledge.loader import TopicDefinition
from cds_service.record import Order, parse_date, reference_to
from cds_service.rules.base import Finding, RuleContext, Suggestion, rule
from cds_service.rules.suggest import delete_suggestion

SEIZURE_TOPIC = "seizure-threshold-drug"
CHOLINERGIC_TOPIC = "cholinergic-drug"
DUPLICATE_TOPIC = "aminopyridine-duplicate"
# What every interaction topic declares it uses (cards/topics/<topic>.yaml).
_SENTENCES = ("status-drafted", "status-active-since", "status-active", "co-drug", "forward", "reverse")


def _status(words: TopicDefinition, order: Order) -> str:
    if order.draft:
        return words.say("status-drafted")
    since = parse_date(order.resource.get("authoredOn"))
    return words.say("status-active-since", since=since.isoformat()) if since else words.say("status-active")


def _pairs(ctx: RuleContext, drug_class: str) -> dict[int, tuple[Order, Order, list[Order]]]:
    """Per amifampridine order: (that order, the order in question the card is about, every co-drug order
    it meets). One card per topic per amifampridine order, however many co-drug orders there are."""
    in_question = {id(o) for o in ctx.orders}
    amifampridine = ctx.facts.concurrent_amifampridine
    asked = [a for a in amifampridine if id(a) in in_question]
    co_drugs = [o for o in [*ctx.record.current_orders, *ctx.drafts] if o.is_(drug_class)]
    groups: dict[int, tuple[Order, Order, list[Order]]] = {}
    for co_drug in co_drugs:
        if asked:
            amif, about = asked[0], asked[0]
        elif id(co_drug) in in_question and amifampridine:
            amif, about = amifampridine[0], co_drug
        else:
            continue
        groups.setdefault(id(amif), (amif, about, []))[2].append(co_drug)
    return groups


def _finding(
    ctx: RuleContext, topic: str, drug_class: str, amif: Order, about: Order, co_drugs: list[Order]
) -> Finding:
    """One card listing every co-drug order: renewals and duplicates of one drug merged, with each
    order's status."""
    words = ctx.knowledge.topic(topic)
    by_drug: dict[str, list[Order]] = {}
    for co_drug in co_drugs:
        ingredient = matched_name(co_drug.facts, ctx.knowledge, drug_class) or co_drug.name
        by_drug.setdefault(ingredient, []).append(co_drug)
    suggestions: list[Suggestion] = []
    listed = []
    for ingredient, orders in by_drug.items():
        statuses = "; ".join(dict.fromkeys(_status(words, o) for o in orders))
        listed.append(words.say("co-drug", other=orders[0].name, statuses=statuses, count=len(orders)))
        suggestions += [
            delete_suggestion(o, words.label("delete", ingredient=ingredient)) for o in orders if o.draft
        ]
        refs = ", ".join(o.reference for o in orders)
        ctx.note(topic, f"{amif.reference} with {refs} ({ingredient}); card on {about.reference}")
    params = {
        "drug": amif.name,
        "drug_status": _status(words, amif),
        "ingredient": ", ".join(by_drug),
        "other": "; ".join(orders[0].name for orders in by_drug.values()),
        "others": "; ".join(listed),
    }
    params["direction"] = words.say("forward" if about is amif else "reverse", **params)
    return Finding(topic=topic, params=params, order=about, suggestions=tuple(suggestions))


def _class_rule(ctx: RuleContext, topic: str, drug_class: str) -> list[Finding]:
    return [
        _finding(ctx, topic, drug_class, amif, about, co_drugs)
        for amif, about, co_drugs in _pairs(ctx, drug_class).values()
    ]


@rule(
    SEIZURE_TOPIC,
    check="co-medication that lowers the seizure threshold",
    reads=("medications",),
    valuesets=("seizure-threshold-lowering-drugs",),
    sentences=_SENTENCES,
    suggestions=("delete",),
)
def seizure_threshold_drug(ctx: RuleContext) -> list[Finding]:
    return _class_rule(ctx, SEIZURE_TOPIC, SEIZURE_THRESHOLD)


@rule(
    CHOLINERGIC_TOPIC,
    check="cholinergic co-medication",
    reads=("medications",),
    valuesets=("cholinergic-drugs",),
    sentences=_SENTENCES,
    suggestions=("delete",),
)
def cholinergic_drug(ctx: RuleContext) -> list[Finding]:
    return _class_rule(ctx, CHOLINERGIC_TOPIC, CHOLINERGIC)


# The checks an unknown co-medication defeats, in the words of the data-unavailable card.
_UNIDENTIFIED_CHECKS = (
    "co-medication that lowers the seizure threshold, cholinergic co-medication, "
    "duplicate aminopyridine therapy"
)


def _unidentified_reason(ctx: RuleContext, order: Order) -> str:
    reference = order.facts.unresolved or ""
    reason = ctx.record.unresolved_medications.get(reference, "is not in the request")
    return f"{reference} {reason}"


# An order whose medicationReference names a Medication that was neither in the request nor fetched,
# and that names or codes no drug otherwise, could be any of the co-drugs above: the interaction checks
# could not judge it. The same pairing decides when it matters; the finding is a data-unavailable card.
@rule(
    "data-unavailable",
    name="unidentified-medication",
    check="identity of a co-medication",
    sentences=("unidentified-what", "unidentified-why"),
)
def unidentified_medication(ctx: RuleContext) -> list[Finding]:
    in_question = {id(order) for order in ctx.orders}
    amifampridine = ctx.facts.concurrent_amifampridine
    if not amifampridine:
        return []
    asked = [order for order in amifampridine if id(order) in in_question]
    unknown = [
        order
        for order in [*ctx.record.current_orders, *ctx.drafts]
        if order.facts.unidentified and not order.classes and (asked or id(order) in in_question)
    ]
    if not unknown:
        return []
    words = ctx.knowledge.topic("data-unavailable")
    about = asked[0] if asked else next(o for o in unknown if id(o) in in_question)
    for order in unknown:
        reason = _unidentified_reason(ctx, order)
        ctx.note("unidentified-medication", f"{order.reference}: drug not identified ({reason})")
    reasons = "; ".join(_unidentified_reason(ctx, o) for o in unknown)
    return [
        Finding(
            topic="data-unavailable",
            params={
                "what": "; ".join(words.say("unidentified-what", reference=o.reference) for o in unknown),
                "why": words.say("unidentified-why", reasons=reasons),
                "checks": _UNIDENTIFIED_CHECKS,
                "drug": about.name,
            },
            order=about,
        )
    ]


@rule(
    DUPLICATE_TOPIC,
    check="duplicate aminopyridine therapy",
    reads=("medications",),
    valuesets=("amifampridine", "other-aminopyridines"),
    tables=("dose-caps",),
    variants=("taken-together",),
    sentences=(
        *_SENTENCES,
        "drafted-together",
        "second-order",
        "total-daily",
        "total-single",
        "cap-daily",
        "cap-single",
    ),
    suggestions=("delete", "keep-one"),
)
def aminopyridine_duplicate(ctx: RuleContext) -> list[Finding]:
    findings = _class_rule(ctx, DUPLICATE_TOPIC, OTHER_AMINOPYRIDINE)
    findings += _taken_together(ctx)
    drafts = ctx.facts.drafted_amifampridine
    asked = [d for d in drafts if any(d is o for o in ctx.orders)]
    if len(drafts) >= 2 and asked:
        words = ctx.knowledge.topic(DUPLICATE_TOPIC)
        about = asked[0]
        others = [d for d in drafts if d is not about]
        ctx.note(DUPLICATE_TOPIC, f"{len(drafts)} amifampridine drafts in one order session")
        findings.append(
            Finding(
                topic=DUPLICATE_TOPIC,
                params={
                    "drug": about.name,
                    "drug_status": _status(words, about),
                    "other": "; ".join(o.name for o in others),
                    "others": "; ".join(
                        words.say("co-drug", other=o.name, statuses=_status(words, o), count=1)
                        for o in others
                    ),
                    "ingredient": words.say("second-order"),
                    "other_status": _status(words, others[0]),
                    "direction": words.say("drafted-together", count=len(drafts)),
                },
                order=about,
                suggestions=tuple(
                    delete_suggestion(o, words.label("keep-one", reference=o.reference)) for o in others
                ),
            )
        )
    return findings


def _linked(one: Order, other: Order) -> bool:
    """Whether either order names the other as its priorPrescription (a dose change, not an add-on)."""
    return reference_to(one.resource.get("priorPrescription")) == other.reference or (
        reference_to(other.resource.get("priorPrescription")) == one.reference
    )


def _taken_together(ctx: RuleContext) -> list[Finding]:
    """A drafted amifampridine order and a current one with no priorPrescription link between them (an
    add-on, a PRN order) whose doses together exceed a cap: a duplicate card naming both and the total,
    covering the cap's topic. Within the caps, the draft stays a dose change of the current order."""
    words = ctx.knowledge.topic(DUPLICATE_TOPIC)
    findings = []
    for draft in ctx.facts.amifampridine_orders:
        dose = ctx.facts.order(draft).dose
        if not draft.draft or not dose.ok:
            continue
        row = ctx.facts.order(draft).band.row
        for current in ctx.facts.current_amifampridine:
            before = ctx.facts.order(current).dose
            if _linked(draft, current) or not before.ok:
                continue
            daily = (dose.mg_per_day or 0) + (before.mg_per_day or 0)
            single = (dose.mg_per_dose or 0) + (before.mg_per_dose or 0)
            totals, caps, covers = [], [], []
            if daily > row.max_daily_mg + 1e-9:
                totals.append(words.say("total-daily", mg_per_day=fmt_mg(daily)))
                caps.append(words.say("cap-daily", cap=fmt_mg(row.max_daily_mg)))
                covers.append("dose-daily-max")
            if single > row.max_single_mg + 1e-9:
                totals.append(words.say("total-single", mg_per_dose=fmt_mg(single)))
                caps.append(words.say("cap-single", cap=fmt_mg(row.max_single_mg)))
                covers.append("dose-single-max")
            if not covers:
                ctx.note(DUPLICATE_TOPIC, f"{draft.reference} with {current.reference}: within the caps")
                continue
            ctx.note(DUPLICATE_TOPIC, f"{draft.reference} with {current.reference}: {', '.join(totals)}")
            keep_one = words.label("keep-one", reference=draft.reference)
            status = words.say("co-drug", other=current.name, statuses=_status(words, current), count=1)
            findings.append(
                Finding(
                    topic=DUPLICATE_TOPIC,
                    variant="taken-together",
                    params={
                        "drug": draft.name,
                        "drug_status": _status(words, draft),
                        "arithmetic": dose.arithmetic,
                        "others": status,
                        "other_arithmetic": before.arithmetic,
                        "total": " and ".join(totals),
                        "caps": " and ".join(caps),
                        "row": row.words,
                        "label_version": ctx.facts.table.label,
                    },
                    order=draft,
                    suggestions=(delete_suggestion(draft, keep_one),),
                    covers=tuple(covers),
                )
            )
    return findings
