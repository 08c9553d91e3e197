"""Age under 6 years at the order date: safety and effectiveness not established (label §1, §8.4)."""

from __future__ import annotations

from cds_service.rules.base import Finding, RuleContext, rule

TOPIC = "age-not-established"


@rule(
    TOPIC,
    check="minimum age (6 years)",
    reads=("patient",),
    tables=("dose-caps",),
    sentences=("birth-date-unknown",),
)
def age_not_established(ctx: RuleContext) -> list[Finding]:
    findings = []
    facts = ctx.facts
    minimum = facts.table.minimum_age_years
    for order in facts.amifampridine_orders:
        on, age = facts.order(order).date, facts.order(order).age
        if age is None:
            ctx.note(TOPIC, "no birth date: the minimum age could not be checked")
            continue
        if age >= minimum:
            ctx.note(TOPIC, f"age {age} at {on.isoformat()}: at or above {minimum}")
            continue
        birth = ctx.record.birth_date()
        findings.append(
            Finding(
                topic=TOPIC,
                params={
                    "drug": order.name,
                    "age": age,
                    "minimum_age": minimum,
                    "birth_date": (
                        birth.isoformat() if birth else ctx.knowledge.topic(TOPIC).say("birth-date-unknown")
                    ),
                    "order_date": on.isoformat(),
                },
                order=order,
            )
        )
    return findings
