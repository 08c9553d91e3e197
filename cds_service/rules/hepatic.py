"""Hepatic impairment (label §2.3, §8.7): any liver condition from the list means the lowest start."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.record import coded, concept_text, current_condition
from cds_service.rules.base import Finding, RuleContext
from cds_service.rules.lowest_start import lowest_start_advice

TOPIC = "hepatic-impairment"


def liver_conditions(ctx: RuleContext) -> list[Mapping[str, Any]]:
    def compute() -> list[Mapping[str, Any]]:
        if "conditions" in ctx.record.unavailable:
            return []
        liver = ctx.knowledge.valueset("liver-conditions")
        return ctx.record.cited(c for c in ctx.record.conditions_in(liver) if current_condition(c))

    return ctx.memo("liver", compute)


def hepatic_impairment(ctx: RuleContext) -> list[Finding]:
    orders = ctx.amifampridine_orders()
    if not orders:
        return []
    conditions = liver_conditions(ctx)
    if not conditions:
        ctx.note(TOPIC, "no current liver condition from the list")
        return []
    listed = "; ".join(
        f"{concept_text(c)} ({coded(c, 'clinicalStatus') or 'status not recorded'})" for c in conditions
    )
    ctx.note(TOPIC, "liver condition: " + ", ".join(f"Condition/{c.get('id')}" for c in conditions))
    findings = []
    for order in orders:
        advice = lowest_start_advice(ctx, order, "hepatic impairment")
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
