"""Hypersensitivity to amifampridine or another aminopyridine: a contraindication (label §4, §5.2)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from cds_service.record import coded, concept_text, is_refuted
from cds_service.rules.base import Finding, RuleContext

TOPIC = "aminopyridine-hypersensitivity"
_VALUESETS = ("amifampridine", "other-aminopyridines", "aminopyridine-allergens")


def _concepts(allergy: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The allergy's code and the substances of its reactions."""
    if isinstance(allergy.get("code"), Mapping):
        yield allergy["code"]
    for reaction in allergy.get("reaction") or []:
        if isinstance(reaction, Mapping) and isinstance(reaction.get("substance"), Mapping):
            yield reaction["substance"]


def _is_aminopyridine(allergy: Mapping[str, Any], ctx: RuleContext) -> bool:
    matchers = [ctx.knowledge.valueset(name) for name in _VALUESETS]
    for concept in _concepts(allergy):
        texts = [concept.get("text")] + [c.get("display") for c in concept.get("coding") or []]
        for matcher in matchers:
            if any(matcher.matches_coding(c) for c in concept.get("coding") or []):
                return True
            if any(matcher.find_name(text) for text in texts if isinstance(text, str)):
                return True
    return False


def aminopyridine_hypersensitivity(ctx: RuleContext) -> list[Finding]:
    orders = ctx.amifampridine_orders()
    if not orders:
        return []
    candidates = [a for a in ctx.record.allergies if _is_aminopyridine(a, ctx)]
    refuted = [a for a in candidates if is_refuted(a)]
    if refuted:
        ctx.note(TOPIC, f"ignored {len(refuted)} refuted or entered-in-error aminopyridine allergy record(s)")
    # A resolved allergy is still a history of hypersensitivity; only "not true" records are ignored.
    allergies = ctx.record.cited(a for a in candidates if not is_refuted(a))
    if not allergies:
        ctx.note(TOPIC, f"no aminopyridine among {len(ctx.record.allergies)} allergy record(s)")
        return []
    listed = "; ".join(_describe(a) for a in allergies)
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


def _describe(allergy: Mapping[str, Any]) -> str:
    parts = [concept_text(allergy)]
    status = coded(allergy, "clinicalStatus")
    if status:
        parts.append(status)
    if allergy.get("criticality"):
        parts.append(f"criticality {allergy['criticality']}")
    manifestations = [
        concept_text({"m": m}, "m")
        for reaction in allergy.get("reaction") or []
        if isinstance(reaction, Mapping)
        for m in reaction.get("manifestation") or []
    ]
    if manifestations:
        parts.append("reaction: " + ", ".join(manifestations))
    recorded = allergy.get("recordedDate") or allergy.get("onsetDateTime")
    if isinstance(recorded, str):
        parts.append(f"recorded {recorded[:10]}")
    return " — ".join([parts[0], ", ".join(parts[1:])]) if len(parts) > 1 else parts[0]
