"""NAT2 poor metabolizer (label §2.4, §12.5): much higher exposure, start at the lowest dose.

How a NAT2 result is read (coded phenotype, genotype, text) is in ``cds_service.facts.nat2``.
"""

from __future__ import annotations

from cds_service.facts import POOR
from cds_service.record import effective_date
from cds_service.rules import lowest_start
from cds_service.rules.base import Finding, RuleContext, rule
from cds_service.rules.lowest_start import lowest_start_advice

TOPIC = "nat2-poor-metabolizer"


@rule(
    TOPIC,
    check="NAT2 poor metabolizer status",
    reads=("nat2",),
    valuesets=("nat2-observations",),
    tables=("nat2", "dose-caps"),
    sentences=lowest_start.SENTENCES,
    suggestions=lowest_start.SUGGESTIONS,
)
def nat2_poor_metabolizer(ctx: RuleContext) -> list[Finding]:
    orders = ctx.facts.amifampridine_orders
    if not orders:
        return []
    result = ctx.facts.nat2
    if result is None:
        ctx.note(TOPIC, "no readable NAT2 result")
        return []
    ctx.note(TOPIC, f"NAT2 {result.phenotype}: Observation/{result.observation.get('id')}")
    if result.phenotype != POOR:
        return []
    ctx.record.cited([result.observation])  # checked against FHIR R4 for --explain; cited either way
    day = effective_date(result.observation)
    findings = []
    for order in orders:
        advice = lowest_start_advice(ctx, order, TOPIC)
        findings.append(
            Finding(
                topic=TOPIC,
                params={
                    "drug": order.name,
                    "result": result.evidence,
                    "result_date": day.isoformat() if day else "date not recorded",
                    "advice": advice.sentence,
                },
                order=order,
                suggestions=advice.suggestions,
            )
        )
    return findings
