"""Seizure history: a contraindication (label §4); febrile seizures only: a warning."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.facts.conditions import abatement, onset
from cds_service.knowledge.loader import TopicDefinition
from cds_service.knowledge.valuesets import CodeMatcher
from cds_service.record import coded, concept_text, has_code, is_refuted
from cds_service.rules.base import Finding, RuleContext, rule

TOPIC = "seizure-history"


@rule(
    TOPIC,
    check="history of seizures",
    reads=("conditions",),
    valuesets=("seizure-disorders", "febrile-seizures"),
    variants=("febrile",),
    sentences=("condition", "status-since", "status-ended", "status-not-recorded"),
)
def seizure_history(ctx: RuleContext) -> list[Finding]:
    orders = ctx.facts.amifampridine_orders
    if not orders:
        return []
    seizures = ctx.knowledge.valueset("seizure-disorders")
    febrile = ctx.knowledge.valueset("febrile-seizures")
    # By code, else by a name in the condition's texts ("Epilepsy" under a local code, "Convulsions").
    candidates = ctx.record.conditions_in(seizures)
    refuted = [c for c in candidates if is_refuted(c)]
    if refuted:
        ctx.note(TOPIC, f"ignored {len(refuted)} refuted or entered-in-error seizure condition(s)")
    # Any clinical status counts: resolved or in remission is still a history of seizures.
    history = ctx.record.cited(c for c in candidates if not is_refuted(c))
    if not history:
        ctx.note(TOPIC, f"no seizure condition among {len(ctx.record.conditions)} condition(s)")
        return []
    names = [concept_text(c) for c in history]
    only_febrile = all(_febrile(ctx, c, seizures, febrile) for c in history)
    cited = ", ".join(f"Condition/{c.get('id')}" for c in history)
    ctx.note(TOPIC, f"seizure history: {cited}")
    words = ctx.knowledge.topic(TOPIC)
    listed = "; ".join(
        words.say("condition", name=name, status=_status(words, c))
        for name, c in zip(names, history, strict=True)
    )
    return [
        Finding(
            topic=TOPIC,
            params={"drug": order.name, "condition": names[0], "conditions": listed},
            order=order,
            variant="febrile" if only_febrile else None,
        )
        for order in orders
    ]


def _febrile(
    ctx: RuleContext, condition: Mapping[str, Any], seizures: CodeMatcher, febrile: CodeMatcher
) -> bool:
    """Febrile seizures only: by the febrile code when the condition matched by code (a code is never
    second-guessed by its text), else by a febrile name ("febrile convulsions") in its texts."""
    match = ctx.record.match_of(seizures, condition)
    if match is None or match.by == "code":
        return has_code(condition, febrile)
    return any(c is condition for c in ctx.record.conditions_in(febrile))


def _status(words: TopicDefinition, condition: Mapping[str, Any]) -> str:
    """ "active, since 2015-06-01"; a condition that ended: "resolved 2019-03-01", not its onset."""
    code = coded(condition, "clinicalStatus")
    status = code or words.say("status-not-recorded")
    ended = abatement(condition, code)
    if ended is not None:
        return words.say("status-ended", status=code or "resolved", ended=ended).strip()
    began = onset(condition)
    return words.say("status-since", status=status, onset=began) if began else status
