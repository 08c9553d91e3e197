"""Which drug classes a medication order belongs to.

An order is matched by any of its codings (RxNorm, ATC, SNOMED, NDC) or by a name in its text: the
CodeableConcept, the coding displays, the reference display, and a referenced or contained Medication's
code and ingredients. Works on DSTU2 MedicationOrder and STU3/R4 MedicationRequest alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.knowledge.loader import Knowledge

# Drug class -> the ValueSet (cards/valuesets/<name>.valueset.json) that defines it.
AMIFAMPRIDINE = "amifampridine"
OTHER_AMINOPYRIDINE = "other-aminopyridines"
CHOLINERGIC = "cholinergic-drugs"
SEIZURE_THRESHOLD = "seizure-threshold-lowering-drugs"
DRUG_CLASSES = (AMIFAMPRIDINE, OTHER_AMINOPYRIDINE, CHOLINERGIC, SEIZURE_THRESHOLD)


@dataclass(frozen=True)
class MedicationFacts:
    """What the order says about its drug: codings, free texts, and the Medication it names."""

    codings: tuple[Mapping[str, Any], ...]
    texts: tuple[str, ...]
    medication: Mapping[str, Any] | None

    @property
    def display_name(self) -> str:
        for text in self.texts:
            if text.strip():
                return text.strip()
        for coding in self.codings:
            if coding.get("code"):
                return f"{coding.get('system', '')}|{coding['code']}"
        return "unnamed medication"


def _concept_parts(concept: Any) -> Iterator[tuple[str, Any]]:
    if not isinstance(concept, Mapping):
        return
    if isinstance(concept.get("text"), str):
        yield "text", concept["text"]
    for coding in concept.get("coding") or []:
        if isinstance(coding, Mapping):
            yield "coding", coding
            if isinstance(coding.get("display"), str):
                yield "text", coding["display"]


def resolve_medication(
    order: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]] | None = None
) -> Mapping[str, Any] | None:
    """The Medication an order references: contained (``#id``) or from ``medications`` by reference."""
    reference = order.get("medicationReference")
    if not isinstance(reference, Mapping):
        return None
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return None
    if ref.startswith("#"):
        for contained in order.get("contained") or []:
            if isinstance(contained, Mapping) and contained.get("id") == ref[1:]:
                return contained
        return None
    if medications:
        # Absolute and relative references name the same resource by their last two segments.
        return medications.get("/".join(ref.rstrip("/").split("/")[-2:]))
    return None


def medication_facts(
    order: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]] | None = None
) -> MedicationFacts:
    codings: list[Mapping[str, Any]] = []
    texts: list[str] = []

    def take(concept: Any) -> None:
        for kind, value in _concept_parts(concept):
            (codings if kind == "coding" else texts).append(value)

    take(order.get("medicationCodeableConcept"))
    reference = order.get("medicationReference")
    if isinstance(reference, Mapping) and isinstance(reference.get("display"), str):
        texts.append(reference["display"])
    medication = resolve_medication(order, medications)
    if medication is not None:
        take(medication.get("code"))
        for ingredient in medication.get("ingredient") or []:
            if isinstance(ingredient, Mapping):
                take(ingredient.get("itemCodeableConcept"))
                item_ref = ingredient.get("itemReference")
                if isinstance(item_ref, Mapping) and isinstance(item_ref.get("display"), str):
                    texts.append(item_ref["display"])
    return MedicationFacts(tuple(codings), tuple(texts), medication)


def classify(facts: MedicationFacts, knowledge: Knowledge) -> frozenset[str]:
    """The drug classes (names from DRUG_CLASSES) the medication belongs to."""
    classes = set()
    for name in DRUG_CLASSES:
        matcher = knowledge.valuesets.get(name)
        if matcher is None:
            continue
        if any(matcher.matches_coding(coding) for coding in facts.codings) or any(
            matcher.find_name(text) for text in facts.texts
        ):
            classes.add(name)
    # Amifampridine is an aminopyridine too, but it is its own class here: the duplicate rule asks for
    # "another" aminopyridine, so a product naming both is only amifampridine.
    if AMIFAMPRIDINE in classes:
        classes.discard(OTHER_AMINOPYRIDINE)
    return frozenset(classes)


def matched_name(facts: MedicationFacts, knowledge: Knowledge, drug_class: str) -> str | None:
    """The ingredient name that put the medication in ``drug_class`` (for card texts)."""
    matcher = knowledge.valuesets.get(drug_class)
    if matcher is None:
        return None
    for text in facts.texts:
        name = matcher.find_name(text)
        if name:
            return name
    for coding in facts.codings:
        if matcher.matches_coding(coding):
            return coding.get("display") or matcher.displays.get((coding.get("system"), coding.get("code")))
    return None
