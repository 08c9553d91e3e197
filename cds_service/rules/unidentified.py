"""``unidentified-medication``: an order whose drug could not be identified, for a patient with amifampridine.

An order whose ``medicationReference`` names a Medication that was neither in the request nor fetched
(no fhirServer, or the query failed), and that names or codes no drug otherwise, could be a cholinergic
drug, a seizure-threshold-lowering drug or another aminopyridine: the interaction checks could not judge
it. The same pairing as the interaction rules decides when it matters (an amifampridine order in
question, or the unidentified order in question for a patient with amifampridine), and the finding is a
``data-unavailable`` card that names the order and says why its drug is unknown.
"""

from __future__ import annotations

from cds_service.knowledge.classify import AMIFAMPRIDINE
from cds_service.record import Order
from cds_service.rules.base import Finding, RuleContext

# The checks an unknown co-medication defeats, in the words of the data-unavailable card.
CHECKS = (
    "co-medication that lowers the seizure threshold, cholinergic co-medication, "
    "duplicate aminopyridine therapy"
)


def _why(ctx: RuleContext, order: Order) -> str:
    reference = order.facts.unresolved or ""
    reason = ctx.record.unresolved_medications.get(reference, "is not in the request")
    return f"{reference} {reason}"


def unidentified_medication(ctx: RuleContext) -> list[Finding]:
    in_question = {id(order) for order in ctx.orders}
    amifampridine = [*ctx.current_amifampridine(), *(d for d in ctx.drafts if d.is_(AMIFAMPRIDINE))]
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
    about = asked[0] if asked else next(o for o in unknown if id(o) in in_question)
    for order in unknown:
        ctx.note("unidentified-medication", f"{order.reference}: drug not identified ({_why(ctx, order)})")
    return [
        Finding(
            topic="data-unavailable",
            params={
                "what": "; ".join(f"the drug ordered in {order.reference}" for order in unknown),
                "why": "the drug could not be identified: " + "; ".join(_why(ctx, o) for o in unknown),
                "checks": CHECKS,
                "drug": about.name,
            },
            order=about,
        )
    ]
