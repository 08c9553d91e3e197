"""Hepatic impairment (label §2.3, §8.7): any liver condition from the list means the lowest start."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.record import coded, concept_text
from cds_service.rules import lowest_start
from cds_service.rules.base import Finding, RuleContext, rule
from cds_service.rules.lowest_start import lowest_start_advice

TOPIC = "hepatic-impairment"


@rule(
    TOPIC,
    check="hepatic impairment",
    reads=("conditions",),
    valuesets=("liver-conditions",),
    tables=("dose-caps",),
    sentences=(*lowest_start.SENTENCES, "condition", "status-not-recorded"),
    suggestions=lowest_start.SUGGESTIONS,
)
def hepatic_impairment(ctx: RuleContext) -> list[Finding]:
    orders = ctx.facts.amifampridine_orders
    if not orders:
        return []
    conditions: list[Mapping[str, Any]] = ctx.facts.liver_conditions
    if not conditions:
        ctx.note(TOPIC, "no current liver condition from the list")
        return []
    words = ctx.knowledge.topic(TOPIC)
    listed = "; ".join(
        words.say(
            "condition",
            name=concept_text(c),
            status=coded(c, "clinicalStatus") or words.say("status-not-recorded"),
        )
        for c in conditions
    )
    ctx.note(TOPIC, "liver condition: " + ", ".join(f"Condition/{c.get('id')}" for c in conditions))
    findings = []
    for order in orders:
        advice = lowest_start_advice(ctx, order, TOPIC)
        findings.append(
            Finding(
                topic=TOPIC,
                params={
                    "drug": order.name,
                    "condition": concept_text(conditions[0]),
                    "conditions": listed,
                    "advice": advice.sentence,
                },
                order=order,
                suggestions=advice.suggestions,
            )
        )
    return findings
