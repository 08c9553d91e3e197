"""Hypersensitivity to amifampridine or another aminopyridine: a contraindication (label §4, §5.2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.knowledge.loader import TopicDefinition
from cds_service.record import coded, concept_text, is_refuted
from cds_service.rules.base import Finding, RuleContext, rule

TOPIC = "aminopyridine-hypersensitivity"
_VALUESETS = ("amifampridine", "other-aminopyridines", "aminopyridine-allergens")


@rule(
    TOPIC,
    check="aminopyridine allergy",
    reads=("allergies",),
    valuesets=_VALUESETS,
    sentences=("allergy", "criticality", "reaction", "recorded"),
)
def aminopyridine_hypersensitivity(ctx: RuleContext) -> list[Finding]:
    orders = ctx.facts.amifampridine_orders
    if not orders:
        return []
    # By code (the allergy's or a reaction substance's), else by a name in their texts that no cue
    # such as "no known allergy to" excludes (cards/text-negation.yaml).
    candidates = ctx.record.allergies_in([ctx.knowledge.valueset(name) for name in _VALUESETS])
    refuted = [a for a in candidates if is_refuted(a)]
    if refuted:
        ctx.note(TOPIC, f"ignored {len(refuted)} refuted or entered-in-error aminopyridine allergy record(s)")
    # A resolved allergy is still a history of hypersensitivity; only "not true" records are ignored.
    allergies = ctx.record.cited(a for a in candidates if not is_refuted(a))
    if not allergies:
        ctx.note(TOPIC, f"no aminopyridine among {len(ctx.record.allergies)} allergy record(s)")
        return []
    words = ctx.knowledge.topic(TOPIC)
    listed = "; ".join(_describe(words, a) for a in allergies)
    ctx.note(
        TOPIC, "aminopyridine allergy: " + ", ".join(f"AllergyIntolerance/{a.get('id')}" for a in allergies)
    )
    return [
        Finding(
            topic=TOPIC,
            params={"drug": order.name, "substance": concept_text(allergies[0]), "allergies": listed},
            order=order,
        )
        for order in orders
    ]


def _describe(words: TopicDefinition, allergy: Mapping[str, Any]) -> str:
    parts = [concept_text(allergy)]
    status = coded(allergy, "clinicalStatus")
    if status:
        parts.append(status)
    if allergy.get("criticality"):
        parts.append(words.say("criticality", criticality=allergy["criticality"]))
    manifestations = [
        concept_text({"m": m}, "m")
        for reaction in allergy.get("reaction") or []
        if isinstance(reaction, Mapping)
        for m in reaction.get("manifestation") or []
    ]
    if manifestations:
        parts.append(words.say("reaction", manifestations=", ".join(manifestations)))
    recorded = allergy.get("recordedDate") or allergy.get("onsetDateTime")
    if isinstance(recorded, str):
        parts.append(words.say("recorded", day=recorded[:10]))
    return (
        words.say("allergy", substance=parts[0], details=", ".join(parts[1:])) if len(parts) > 1 else parts[0]
    )
