"""NAT2 status (label §2.4, §12.5): the phenotype the newest readable NAT2 result states.

A result is read only when the Observation is about NAT2: "NAT2" or HGNC:7646 in its code, value or any
component (gene studied, LOINC 48018-6), the bare HGNC number 7646 in an HGNC gene-ID system
(``cards/nat2.yaml``), or a ``derivedFrom`` genotype that is NAT2's (the IG's therapeutic implication names
no gene itself). Shapes, in order: a coded phenotype (LOINC answer LA9657-3 and friends,
as a therapeutic-implication component, LOINC 53040-2 code or component, or the value); a genotype
such as ``NAT2*5/*6`` judged by allele function (``cards/nat2.yaml``); text such as "slow acetylator".
A diplotype counts only when it is NAT2's: written after "NAT2" (``NAT2*5/*6``, ``NAT2 *5/*6``,
``NAT2 genotype: *5/*6``), or the value of an observation or component whose own code names NAT2 (or
whose "gene studied" component is NAT2), or of a sibling component when NAT2 is the only gene
studied -- so "CYP2D6 *4/*4; NAT2 *5/*6" is read as NAT2 *5/*6. A poor
phrase preceded within a few words by "no", "not", "negative for" or "without" does not count.
The newest NAT2 result that gives a phenotype wins; only "poor" raises a card.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cds_service.knowledge.loader import Knowledge, KnowledgeError
from cds_service.record import PatientRecord, reference_to

POOR = "poor"
INDETERMINATE = "indeterminate"
GENE_STUDIED = "48018-6"  # LOINC "Gene studied [ID]"
# Not the references or identifiers: an id such as "pat-nat2-obs-2" does not make a result NAT2's.
_NOT_CONTENT = frozenset(
    {
        "subject",
        "performer",
        "id",
        "identifier",
        "meta",
        "derivedFrom",
        "basedOn",
        "hasMember",
        "specimen",
        "encounter",
        "partOf",
        "focus",
        "device",
    }
)
_ALLELES = r"\*\s*(?P<first>\d+)[A-Z]?\s*/\s*(?:NAT2)?\s*\*\s*(?P<second>\d+)[A-Z]?"
# A bare diplotype, read only from a value that belongs to NAT2.
_DIPLOTYPE = re.compile(_ALLELES, re.IGNORECASE)
# A diplotype written after "NAT2" (NAT2*5/*6, NAT2 *5/*6, NAT2 genotype: *5/*6), read anywhere.
_NAT2_DIPLOTYPE = re.compile(
    rf"\bNAT2\s*(?:(?:genotype|diplotype)\s*)?:?\s*(?P<diplotype>{_ALLELES})", re.IGNORECASE
)
# "no", "not", "negative for" or "without" up to two words before a phrase, in the same clause, negate it.
_NEGATED = re.compile(r"\b(?:no|not|negative\s+for|without)(?:[\s-]+\w+){0,2}[\s-]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Nat2Result:
    phenotype: str  # poor | intermediate | normal | rapid | ultrarapid | indeterminate
    evidence: str  # what the record says, in words
    observation: Mapping[str, Any]


def _config(knowledge: Knowledge) -> Mapping[str, Any]:
    data = knowledge.data.get("nat2")
    if not isinstance(data, Mapping) or not isinstance(data.get("phenotype_answers"), Mapping):
        raise KnowledgeError("cards/nat2.yaml is missing or has no phenotype_answers")
    return data


def _strings(value: Any) -> Iterator[str]:
    """Every string in a (small) resource, for the "is this about NAT2" and free-text tests."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _codings(value: Any) -> Iterator[Mapping[str, Any]]:
    """Codings of the observation's value and of its components' values."""
    concepts = [value.get("valueCodeableConcept")]
    concepts += [
        c.get("valueCodeableConcept") for c in value.get("component") or [] if isinstance(c, Mapping)
    ]
    for concept in concepts:
        if isinstance(concept, Mapping):
            yield from (c for c in concept.get("coding") or [] if isinstance(c, Mapping))


def _about_nat2(strings: list[str], gene: Mapping[str, Any]) -> bool:
    symbol = str(gene.get("symbol", "NAT2")).upper()
    hgnc = str(gene.get("hgnc", "HGNC:7646")).upper()
    return any(symbol in s.upper() or hgnc in s.upper() for s in strings)


def _all_codings(value: Any) -> Iterator[Mapping[str, Any]]:
    """Every Coding in a (small) element: the mappings with a string system and code."""
    if isinstance(value, Mapping):
        if isinstance(value.get("system"), str) and isinstance(value.get("code"), str):
            yield value
        for item in value.values():
            yield from _all_codings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_codings(item)


def _hgnc_coded(value: Any, gene: Mapping[str, Any]) -> bool:
    """A coding of NAT2 by its bare HGNC number ("7646") in an HGNC gene-ID system, as older systems
    send it (Genomics Reporting IG, codings page). "HGNC:7646" itself is found as a string."""
    number = str(gene.get("hgnc", "HGNC:7646")).upper().removeprefix("HGNC:")
    systems = {str(system).rstrip("/") for system in gene.get("systems") or []}
    return any(
        coding["system"].rstrip("/") in systems
        and coding["code"].strip().upper() in {number, f"HGNC:{number}"}
        for coding in _all_codings(value)
    )


def _names_nat2(element: Any, gene: Mapping[str, Any]) -> bool:
    """Whether an element (a code, a value, a component) names NAT2: the symbol or HGNC id in a text,
    display or code, or the bare HGNC number in an HGNC gene-ID system."""
    return _about_nat2(list(_strings(element)), gene) or _hgnc_coded(element, gene)


def _genes_studied(observation: Mapping[str, Any], gene: Mapping[str, Any]) -> list[bool]:
    """For each "gene studied" component (LOINC 48018-6), whether its gene is NAT2."""
    return [
        _names_nat2({k: v for k, v in c.items() if k.startswith("value")}, gene)
        for c in observation.get("component") or []
        if isinstance(c, Mapping) and GENE_STUDIED in _codes(c.get("code"))
    ]


def _codes(concept: Any) -> set[str]:
    codings = concept.get("coding") if isinstance(concept, Mapping) else None
    return {str(c.get("code")) for c in codings or [] if isinstance(c, Mapping)}


def _value_strings(element: Mapping[str, Any]) -> list[str]:
    return [s for key, value in element.items() if key.startswith("value") for s in _strings(value)]


def _nat2_values(observation: Mapping[str, Any], gene: Mapping[str, Any]) -> list[str]:
    """Strings of the values that are NAT2's: the observation's own value when its code names NAT2 or a
    "gene studied" component is NAT2; each component's value when that component's code names NAT2, or
    when NAT2 is the only gene studied (the IG shape: gene studied and genotype in sibling components)."""
    components = [c for c in observation.get("component") or [] if isinstance(c, Mapping)]
    studied = _genes_studied(observation, gene)
    only_nat2 = bool(studied) and all(studied)
    owned = [observation] if any(studied) or _names_nat2(observation.get("code"), gene) else []
    owned += [
        c
        for c in components
        if GENE_STUDIED not in _codes(c.get("code")) and (only_nat2 or _names_nat2(c.get("code"), gene))
    ]
    return [s for element in owned for s in _value_strings(element)]


def _diplotype(strings: list[str], nat2_values: list[str]) -> tuple[str, str, str] | None:
    """(first allele, second allele, diplotype as written) of the first NAT2 diplotype, if any."""
    for text in strings:
        if match := _NAT2_DIPLOTYPE.search(text):
            return match.group("first"), match.group("second"), match.group("diplotype")
    for text in nat2_values:
        if match := _DIPLOTYPE.search(text):
            return match.group("first"), match.group("second"), match.group(0)
    return None


def _genotype(strings: list[str], nat2_values: list[str], config: Mapping[str, Any]) -> str | None:
    found = _diplotype(strings, nat2_values)
    if found is None:
        return None
    functions = config.get("allele_function") or {}
    increased = {str(a) for a in functions.get("increased") or []}
    decreased = {str(a) for a in functions.get("decreased") or []}
    kinds = [
        "decreased" if a in decreased else "increased" if a in increased else "unknown" for a in found[:2]
    ]
    if "unknown" in kinds:
        return INDETERMINATE
    slow = kinds.count("decreased")
    return {2: POOR, 1: "intermediate", 0: "rapid"}[slow] + f"|{found[2]}"


def _says_poor(text: str, phrase: str) -> bool:
    """True when ``phrase`` occurs in ``text`` (both lower case) without a negation just before it."""
    start = text.find(phrase)
    while start != -1:
        if not _NEGATED.search(text[:start]):
            return True
        start = text.find(phrase, start + 1)
    return False


def read_nat2(
    observation: Mapping[str, Any],
    config: Mapping[str, Any],
    derived_from: Sequence[Mapping[str, Any]] = (),
) -> Nat2Result | None:
    """The phenotype this Observation states, or None when it is not a NAT2 result.

    ``derived_from``: the observations it cites in ``derivedFrom`` (the IG's therapeutic implication names
    no gene itself; the genotype it derives from does).
    """
    gene = config.get("gene") or {}
    content = {k: v for k, v in observation.items() if k not in _NOT_CONTENT}
    strings = list(_strings(content))
    if not (_about_nat2(strings, gene) or _hgnc_coded(content, gene)):
        studied = _genes_studied(observation, gene)
        derives_from_nat2 = any(read_nat2(source, config) is not None for source in derived_from)
        if studied or not derives_from_nat2:  # another gene studied, or nothing says NAT2
            return None
    answers = config["phenotype_answers"]
    for coding in _codings(observation):
        phenotype = answers.get(coding.get("code"))
        if phenotype:
            shown = coding.get("display") or phenotype
            return Nat2Result(phenotype, f"{shown} (LOINC answer {coding['code']})", observation)
    genotype = _genotype(strings, _nat2_values(observation, config.get("gene") or {}), config)
    if genotype and genotype != INDETERMINATE:
        phenotype, _, diplotype = genotype.partition("|")
        return Nat2Result(
            phenotype, f"genotype NAT2{diplotype.replace(' ', '')} → {phenotype} metabolizer", observation
        )
    lowered = [s.lower() for s in strings]
    for phrase in config.get("poor_text") or []:
        if any(_says_poor(s, phrase.lower()) for s in lowered):
            return Nat2Result(POOR, f'reported as "{phrase}"', observation)
    return Nat2Result(INDETERMINATE, "NAT2 result without a phenotype this service can read", observation)


def nat2_status(record: PatientRecord, knowledge: Knowledge) -> Nat2Result | None:
    """The newest NAT2 result that states a phenotype, or None."""
    config = _config(knowledge)
    matcher = knowledge.valueset("nat2-observations")
    observations = record.observations_in(matcher)
    by_reference = {f"Observation/{o['id']}": o for o in observations if isinstance(o.get("id"), str)}
    for observation in observations:
        cites = [reference_to(d) for d in observation.get("derivedFrom") or ()]
        sources = [by_reference[r] for r in cites if r in by_reference and by_reference[r] is not observation]
        result = read_nat2(observation, config, sources)
        if result is not None and result.phenotype != INDETERMINATE:
            return result
    return None
