"""Which drug classes a medication order belongs to.

An order is matched by any of its codings (RxNorm, ATC, SNOMED, NDC) or by a name in its text: the
CodeableConcept, the coding displays, the reference display, and a referenced or contained Medication's
code and ingredients. Works on DSTU2 MedicationOrder and STU3/R4 MedicationRequest alike.

A ``medicationReference`` to a Medication that is neither contained nor among the ``medications`` given
is *unresolved*: the facts keep the reference, so the order can be named as one whose drug is unknown
(and the Medication fetched from the FHIR server, see ``cds_service.hooks.prefetch``).
"""

from __future__ import annotations

from collections.abc import Mapping
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
    # The Medication reference ("Medication/x", or "#x" when contained) that could not be resolved.
    unresolved: str | None = None

    @property
    def display_name(self) -> str:
        for text in self.texts:
            if text.strip():
                return text.strip()
        for coding in self.codings:
            if coding.get("code"):
                return f"{coding.get('system', '')}|{coding['code']}"
        if self.unresolved:
            return f"unidentified medication ({self.unresolved})"
        return "unnamed medication"

    @property
    def unidentified(self) -> bool:
        """Its Medication could not be resolved and nothing else in the order names or codes the drug."""
        return self.unresolved is not None and not self.codings and not any(t.strip() for t in self.texts)


def _take(concept: Any, codings: list[Mapping[str, Any]], texts: list[str]) -> None:
    """Add a CodeableConcept's codings and its texts (text, coding displays) to the lists."""
    if not isinstance(concept, dict):
        return
    text = concept.get("text")
    if isinstance(text, str):
        texts.append(text)
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict):
            codings.append(coding)
            display = coding.get("display")
            if isinstance(display, str):
                texts.append(display)


def medication_reference(order: Mapping[str, Any]) -> str | None:
    """The reference of an order's Medication as written: "#x" (contained), "Medication/x" or absolute."""
    reference = order.get("medicationReference")
    if isinstance(reference, Mapping) and isinstance(reference.get("reference"), str):
        return reference["reference"]
    return None


def reference_key(reference: str) -> str:
    """Absolute and relative references name the same resource by their last two segments."""
    return "/".join(reference.rstrip("/").split("/")[-2:])


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
        return medications.get(reference_key(ref))
    return None


def medication_facts(
    order: Mapping[str, Any], medications: Mapping[str, Mapping[str, Any]] | None = None
) -> MedicationFacts:
    codings: list[Mapping[str, Any]] = []
    texts: list[str] = []
    _take(order.get("medicationCodeableConcept"), codings, texts)
    reference = order.get("medicationReference")
    if reference is None:  # the common case: a coded product, nothing to resolve
        return MedicationFacts(tuple(codings), tuple(texts), None)
    if isinstance(reference, Mapping) and isinstance(reference.get("display"), str):
        texts.append(reference["display"])
    medication = resolve_medication(order, medications)
    if medication is None:
        ref = medication_reference(order)
        unresolved = ref if ref is None or ref.startswith("#") else reference_key(ref)
        return MedicationFacts(tuple(codings), tuple(texts), None, unresolved)
    _take(medication.get("code"), codings, texts)
    for ingredient in medication.get("ingredient") or []:
        if isinstance(ingredient, Mapping):
            _take(ingredient.get("itemCodeableConcept"), codings, texts)
            item_ref = ingredient.get("itemReference")
            if isinstance(item_ref, Mapping) and isinstance(item_ref.get("display"), str):
                texts.append(item_ref["display"])
    return MedicationFacts(tuple(codings), tuple(texts), medication)


# (knowledge version, codes, texts) -> classes. Formularies are finite: the same product names and codes
# come back on every patient's medication list, so a long record costs dictionary lookups, not regexes.
_CLASSES: dict[tuple[str, tuple[tuple[Any, Any], ...], tuple[str, ...]], frozenset[str]] = {}
_CLASSES_MAX = 50_000


def classify(facts: MedicationFacts, knowledge: Knowledge) -> frozenset[str]:
    """The drug classes (names from DRUG_CLASSES) the medication belongs to."""
    key = (
        knowledge.version,
        tuple((coding.get("system"), coding.get("code")) for coding in facts.codings),
        facts.texts,
    )
    classes = _CLASSES.get(key)
    if classes is None:
        if len(_CLASSES) >= _CLASSES_MAX:
            _CLASSES.clear()
        classes = _CLASSES[key] = _classify(facts, knowledge)
    return classes


def _classify(facts: MedicationFacts, knowledge: Knowledge) -> frozenset[str]:
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
