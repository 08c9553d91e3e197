"""Renal impairment (label §2.2, §8.6).

CLcr 15-90 mL/min or a kidney condition: warning, lowest initial dose on a new start. CLcr below 15,
ESRD or dialysis: critical, because the label makes no dose recommendation. How the renal status is
read (measured clearance, Cockcroft-Gault, eGFR; kidney conditions) is in ``cds_service.facts.renal``.
"""

from __future__ import annotations

from cds_service.facts import ESRD, IMPAIRED
from cds_service.rules import lowest_start
from cds_service.rules.base import Finding, RuleContext, rule
from cds_service.rules.lowest_start import StartAdvice, lowest_start_advice

TOPIC = "renal-impairment"


@rule(
    TOPIC,
    check="renal impairment",
    reads=("renal",),
    valuesets=(
        "renal-function-observations",
        "kidney-conditions",
        "end-stage-renal-disease",
        "body-weight-observations",
    ),
    tables=("dose-caps",),
    variants=("end-stage",),
    sentences=(
        *lowest_start.SENTENCES,
        "end-stage",
        "end-stage-ordered",
        "crcl",
        "crcl-unknown",
        "no-conditions",
    ),
    suggestions=lowest_start.SUGGESTIONS,
)
def renal_impairment(ctx: RuleContext) -> list[Finding]:
    findings = []
    facts = ctx.facts
    words = ctx.knowledge.topic(TOPIC)
    for order in facts.amifampridine_orders:
        status = facts.order(order).renal
        ctx.note(TOPIC, f"renal function: {status.level or 'unknown'}; {status.how}")
        if status.level not in {ESRD, IMPAIRED}:
            continue
        figure = (
            words.say("crcl", value=f"{status.crcl:.0f}")
            if status.crcl is not None
            else words.say("crcl-unknown")
        )
        conditions = "; ".join(status.conditions) or words.say("no-conditions")
        if status.level == ESRD:
            dose = facts.order(order).dose
            sentence = (
                words.say("end-stage-ordered", arithmetic=dose.arithmetic)
                if dose.ok
                else words.say("end-stage")
            )
            advice = StartAdvice(sentence, ())
        else:
            advice = lowest_start_advice(ctx, order, TOPIC)
        findings.append(
            Finding(
                topic=TOPIC,
                variant="end-stage" if status.level == ESRD else None,
                params={
                    "drug": order.name,
                    "crcl": figure,
                    "how": status.how,
                    "conditions": conditions,
                    "advice": advice.sentence,
                },
                order=order,
                suggestions=advice.suggestions,
            )
        )
    return findings
