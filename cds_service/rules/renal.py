"""Renal impairment (label §2.2, §8.6).

CLcr 15-90 mL/min or a kidney condition: warning, lowest initial dose on a new start. CLcr below 15,
ESRD or dialysis: critical, because the label makes no dose recommendation. How the renal status is
read (measured clearance, Cockcroft-Gault, eGFR; bounds such as ">60"; kidney conditions) is in
``cds_service.facts.renal``.

A newest result that is too old (``CDS_RENAL_MAX_AGE_DAYS``) or a bound that does not decide the level
(">60") is not passed over in silence: renal function is unknown, so the lowest start for renal
impairment cannot be applied, and a data-unavailable card says so (the usual starting-dose check still
runs). A kidney condition still gives the renal card, which then says why the result was not used.
"""

from __future__ import annotations

from cds_service.facts import ESRD, IMPAIRED, RenalStatus
from cds_service.facts.renal import COCKCROFT_GAULT, EGFR, MEASURED, OLD
from cds_service.knowledge.loader import TopicDefinition
from cds_service.record import Order
from cds_service.rules import lowest_start
from cds_service.rules.base import Finding, RuleContext, rule
from cds_service.rules.lowest_start import StartAdvice, lowest_start_advice

TOPIC = "renal-impairment"
DATA_UNAVAILABLE = "data-unavailable"
# The sentence naming the measure a figure comes from (the label's thresholds are for CrCl).
_MEASURE_SENTENCES = {MEASURED: "measured", COCKCROFT_GAULT: "cockcroft-gault", EGFR: "egfr"}


@rule(
    TOPIC,
    check="renal impairment",
    reads=("renal",),
    also=(DATA_UNAVAILABLE,),
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
        *_MEASURE_SENTENCES.values(),
        "crcl-unknown",
        "no-conditions",
        "figure-old",
        "figure-undecided",
        "unknown-check-old",
        "unknown-check-undecided",
        "unknown-what-old",
        "unknown-why-old",
        "unknown-what-undecided",
        "unknown-why-undecided",
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
            if status.unused:
                findings.append(_unknown(ctx, words, order, status))
            continue
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
                    "crcl": _figure(words, status),
                    "how": status.how,
                    "conditions": "; ".join(status.conditions) or words.say("no-conditions"),
                    "advice": advice.sentence,
                },
                order=order,
                suggestions=advice.suggestions,
            )
        )
    return findings


def _result(words: TopicDefinition, status: RenalStatus) -> str:
    """The newest result in words, naming its measure: "eGFR 55 mL/min/1.73 m²", "measured CrCl >90"."""
    if status.figure is None or status.measure is None:
        return words.say("crcl-unknown")
    return words.say(_MEASURE_SENTENCES[status.measure], value=status.figure, unit=status.unit)


def _day(status: RenalStatus) -> str:
    return status.on.isoformat() if status.on else "undated"


def _figure(words: TopicDefinition, status: RenalStatus) -> str:
    """What the renal card shows as the renal function: the result, or why it was not judged on."""
    if status.unused is None:
        return _result(words, status)
    key = "figure-old" if status.unused == OLD else "figure-undecided"
    return words.say(key, result=_result(words, status), day=_day(status), days=status.age_days)


def _unknown(ctx: RuleContext, words: TopicDefinition, order: Order, status: RenalStatus) -> Finding:
    """A data-unavailable finding: the newest renal result was not judged on, renal function is unknown."""
    kind = "old" if status.unused == OLD else "undecided"
    values = {
        "result": _result(words, status),
        "day": _day(status),
        "days": status.age_days,
        "max_days": ctx.options.renal_max_age_days,
    }
    return Finding(
        topic=DATA_UNAVAILABLE,
        params={
            "checks": words.say(f"unknown-check-{kind}", **values),
            "what": words.say(f"unknown-what-{kind}", **values),
            "why": words.say(f"unknown-why-{kind}", **values),
            "drug": order.name,
        },
        order=order,
    )
