"""One hook call from validated request to cards: orders → patient record → rules → cards.

Shared by the HTTP endpoint and the offline ``cds-service evaluate`` command, so both give the same
answer for the same request. The common case — an order that has nothing to do with amifampridine —
returns before any patient data is read or fetched.

A draft whose drug is a ``medicationReference`` to a Medication the request does not hold cannot be
dismissed as unrelated: it is classified again once that Medication has been fetched with the patient
data (one ``Medication?_id=`` query for the drafts and the current orders together, see
``hooks.prefetch``). Without a fhirServer, or when the fetch fails, the order stays unidentified: it
is named in ``--explain`` and in the engine notes, and when the patient has amifampridine the
``unidentified-medication`` rule says in a data-unavailable card that the drug of that order is unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_service.card_keys import CardKeys, card_keys
from cds_service.cards import render_findings
from cds_service.data_keys import PREFETCH_KEYS
from cds_service.hooks.errors import PreconditionFailed
from cds_service.hooks.prefetch import ResolvedData
from cds_service.hooks.validation import HookCall
from cds_service.knowledge.classify import AMIFAMPRIDINE
from cds_service.knowledge.loader import Knowledge
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
    keys: dict[str, CardKeys] = field(default_factory=dict)  # by card uuid: its finding and its order


def classify_drafts(
    call: HookCall, knowledge: Knowledge, fetched: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[list[Order], list[Order]]:
    """(orders in question, every draft order). order-select: only the selections are in question.

    ``fetched``: Medications read from the FHIR server by reference (``ResolvedData.medications``)."""
    medications = {
        **(fetched or {}),
        **{
            f"Medication/{r['id']}": r
            for r in call.draft_orders
            if r.get("resourceType") == "Medication" and r.get("id")
        },
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
    refuse_without_data: bool = False,
) -> Outcome:
    """Cards for one hook call. ``refuse_without_data``: raise ``PreconditionFailed`` (412) when none of
    the patient data could be had, instead of answering with a card that says what was not checked."""
    in_question, drafts = classify_drafts(call, knowledge)
    if not any(order.classes for order in in_question) and not _worth_identifying(call, in_question):
        # Not amifampridine and nothing that interacts with it: nothing to check, nothing to fetch.
        return Outcome(cards=[], orders=drafts)
    data = fetch(call)
    if data.medications:
        in_question, drafts = classify_drafts(call, knowledge, data.medications)
    related = any(order.classes for order in in_question)
    notes = _unidentified_notes(drafts, data)
    if set(data.unavailable) >= set(PREFETCH_KEYS):
        if not related:  # only an unidentified draft brought us here, and there is no record to judge
            return Outcome(cards=[], notes=notes, orders=drafts, data=data)
        if refuse_without_data:  # CDS_NO_DATA_STATUS=412: the spec's answer, for an EHR that shows it
            missing = sorted(data.unavailable)
            reasons = "; ".join(sorted(set(data.unavailable.values())))
            raise PreconditionFailed(
                f"none of the patient data the checks need could be obtained ({reasons})", missing
            )
        # Otherwise the rules run on an empty record: every check that needed it is named in one
        # data-unavailable card (rules.nothing_read), and what the order alone tells is still checked.
    # Draft orders come from the context; the record's copy of the same order (a re-sign) is dropped.
    record = build_record(data.values, knowledge, unavailable=data.unavailable)
    record.unresolved_medications = dict(data.unresolved)
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
        notes=notes,
    )
    if not related and not _amifampridine_known(record.current_orders, drafts):
        # An unidentified draft meets no known amifampridine: nothing it could interact with.
        ctx.note("engine", "no amifampridine in the orders or the current medications")
        return Outcome(cards=[], notes=ctx.notes, orders=drafts, record=record, data=data)
    if not ctx.concerns_amifampridine():
        ctx.note("engine", "no amifampridine in the orders in question or the current medications")
        return Outcome(cards=[], notes=ctx.notes, orders=drafts, record=record, data=data)
    results = evaluate(ctx)
    rendered = render_findings(results.findings, knowledge)
    return Outcome(
        cards=[card for _, card in rendered],
        keys={card["uuid"]: card_keys(card, finding) for finding, card in rendered},
        findings=list(results.findings),
        notes=ctx.notes,
        orders=drafts,
        record=record,
        data=data,
        results=results,
    )


def _worth_identifying(call: HookCall, in_question: Sequence[Order]) -> bool:
    """Whether an order in question has a drug that only its referenced Medication could tell: it is
    fetched when there is a fhirServer; without one, an order with no name at all still goes on, so that
    a patient on amifampridine is told the drug could not be identified."""
    for order in in_question:
        unresolved = order.facts.unresolved
        if unresolved is None or order.classes:
            continue
        fetchable = call.fhir_server is not None and not unresolved.startswith("#")  # "#x": contained
        if fetchable or order.facts.unidentified:
            return True
    return False


def _amifampridine_known(current: Sequence[Order], drafts: Sequence[Order]) -> bool:
    return any(order.is_(AMIFAMPRIDINE) for order in [*current, *drafts])


def _unidentified_notes(drafts: Sequence[Order], data: ResolvedData) -> list[tuple[str, str]]:
    """One engine note per draft whose drug stayed unknown (current orders are noted by the rule)."""
    return [
        (
            "engine",
            f"{order.reference}: its drug could not be identified ({order.facts.unresolved} "
            f"{data.unresolved.get(order.facts.unresolved or '', 'is not in the request')})",
        )
        for order in drafts
        if order.facts.unresolved and not order.classes
    ]
