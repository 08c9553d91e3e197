"""One hook call from validated request to cards: orders → patient record → rules → cards.

Shared by the HTTP endpoint and the offline ``cds-service evaluate`` command, so both give the same
answer for the same request. The common case — an order that has nothing to do with amifampridine —
returns before any patient data is read or fetched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_service.cards import render_cards
from cds_service.data_keys import PREFETCH_KEYS
from cds_service.knowledge.loader import Knowledge
from cds_service.protocol.errors import PreconditionFailed
from cds_service.protocol.prefetch import ResolvedData
from cds_service.protocol.validation import HookCall
from cds_service.record import ORDER_TYPES, Order, PatientRecord, build_record, classify_order
from cds_service.rules import Results, evaluate
from cds_service.rules.base import Finding, Options, RuleContext


@dataclass
class Outcome:
    cards: list[dict[str, Any]]
    findings: list[Finding] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    record: PatientRecord | None = None
    data: ResolvedData | None = None
    results: Results | None = None  # what each rule did (None: the rules did not run)


def classify_drafts(call: HookCall, knowledge: Knowledge) -> tuple[list[Order], list[Order]]:
    """(orders in question, every draft order). order-select: only the selections are in question."""
    medications = {
        f"Medication/{r['id']}": r
        for r in call.draft_orders
        if r.get("resourceType") == "Medication" and r.get("id")
    }
    drafts = [
        classify_order(resource, knowledge, draft=True, medications=medications)
        for resource in call.draft_orders
        if resource.get("resourceType") in ORDER_TYPES
    ]
    if call.selections is None:
        return drafts, drafts
    return [order for order in drafts if order.reference in call.selections], drafts


def run(
    call: HookCall,
    knowledge: Knowledge,
    fetch: Callable[[HookCall], ResolvedData],
    *,
    today: date | None = None,
    options: Options | None = None,
) -> Outcome:
    in_question, drafts = classify_drafts(call, knowledge)
    if not any(order.classes for order in in_question):
        # Not amifampridine and nothing that interacts with it: nothing to check, nothing to fetch.
        return Outcome(cards=[], orders=drafts)
    data = fetch(call)
    if set(data.unavailable) >= set(PREFETCH_KEYS):
        missing = sorted(data.unavailable)
        reasons = "; ".join(sorted(set(data.unavailable.values())))
        raise PreconditionFailed(
            f"none of the patient data the checks need could be obtained ({reasons})", missing
        )
    # Draft orders come from the context; the record's copy of the same order (a re-sign) is dropped.
    record = build_record(data.values, knowledge, unavailable=data.unavailable)
    if "patient" not in record.unavailable and record.birth_date() is None:
        # Without a birth date the minimum-age check and the child dose row cannot run: the rules that
        # need the patient are reported in the data-unavailable card instead of passing in silence.
        record.unavailable["patient"] = (
            "no Patient resource came with the request"
            if record.patient is None
            else "the Patient resource has no readable birthDate"
        )
    draft_refs = {order.reference for order in drafts}
    record.current_orders = [o for o in record.current_orders if o.reference not in draft_refs]
    ctx = RuleContext(
        record=record,
        orders=in_question,
        drafts=drafts,
        knowledge=knowledge,
        today=today or date.today(),
        options=options or Options(),
    )
    if not ctx.concerns_amifampridine():
        ctx.note("engine", "no amifampridine in the orders in question or the current medications")
        return Outcome(cards=[], notes=ctx.notes, orders=drafts, record=record, data=data)
    results = evaluate(ctx)
    return Outcome(
        cards=render_cards(results.findings, knowledge),
        findings=list(results.findings),
        notes=ctx.notes,
        orders=drafts,
        record=record,
        data=data,
        results=results,
    )
