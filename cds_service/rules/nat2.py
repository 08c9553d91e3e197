"""NAT2 poor metabolizer (label §2.4, §12.5): much higher exposure, start at the lowest dose.

A result is read only when the Observation is about NAT2 (gene studied HGNC:7646, "NAT2" in its texts,
or a NAT2 star-allele genotype). Shapes, in order: a coded phenotype (LOINC answer LA9657-3 and friends,
as a therapeutic-implication component, LOINC 53040-2 code or component, or the value); a genotype
such as ``NAT2*5/*6`` judged by allele function (``cards/nat2.yaml``); text such as "slow acetylator".
The newest NAT2 result that gives a phenotype wins; only "poor" raises a card.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.knowledge.loader import KnowledgeError
from cds_service.record import effective_date
from cds_service.rules.base import Finding, RuleContext
from cds_service.rules.lowest_start import lowest_start_advice

TOPIC = "nat2-poor-metabolizer"
POOR = "poor"
INDETERMINATE = "indeterminate"
_DIPLOTYPE = re.compile(r"\*\s*(\d+)[A-Z]?\s*/\s*(?:NAT2)?\s*\*\s*(\d+)[A-Z]?", re.IGNORECASE)


@dataclass(frozen=True)
class Nat2Result:
    phenotype: str  # poor | intermediate | normal | rapid | ultrarapid | indeterminate
    evidence: str  # what the record says, in words
    observation: Mapping[str, Any]


def _config(ctx: RuleContext) -> Mapping[str, Any]:
    data = ctx.knowledge.data.get("nat2")
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


def _genotype(strings: list[str], config: Mapping[str, Any]) -> str | None:
    # The observation is already known to be about NAT2, so any diplotype in it is a NAT2 genotype.
    candidates = strings
    functions = config.get("allele_function") or {}
    increased = {str(a) for a in functions.get("increased") or []}
    decreased = {str(a) for a in functions.get("decreased") or []}
    for text in candidates:
        match = _DIPLOTYPE.search(text)
        if not match:
            continue
        kinds = [
            "decreased" if a in decreased else "increased" if a in increased else "unknown"
            for a in match.groups()
        ]
        if "unknown" in kinds:
            return INDETERMINATE
        slow = kinds.count("decreased")
        return {2: POOR, 1: "intermediate", 0: "rapid"}[slow] + f"|{match.group(0)}"
    return None


def read_nat2(observation: Mapping[str, Any], config: Mapping[str, Any]) -> Nat2Result | None:
    """The phenotype this Observation states, or None when it is not a NAT2 result."""
    strings = list(_strings({k: v for k, v in observation.items() if k not in {"subject", "performer"}}))
    if not _about_nat2(strings, config.get("gene") or {}):
        return None
    answers = config["phenotype_answers"]
    for coding in _codings(observation):
        phenotype = answers.get(coding.get("code"))
        if phenotype:
            shown = coding.get("display") or phenotype
            return Nat2Result(phenotype, f"{shown} (LOINC answer {coding['code']})", observation)
    genotype = _genotype(strings, config)
    if genotype and genotype != INDETERMINATE:
        phenotype, _, diplotype = genotype.partition("|")
        return Nat2Result(
            phenotype, f"genotype NAT2{diplotype.replace(' ', '')} → {phenotype} metabolizer", observation
        )
    lowered = [s.lower() for s in strings]
    for phrase in config.get("poor_text") or []:
        if any(phrase.lower() in s for s in lowered):
            return Nat2Result(POOR, f'reported as "{phrase}"', observation)
    return Nat2Result(INDETERMINATE, "NAT2 result without a phenotype this service can read", observation)


def nat2_status(ctx: RuleContext) -> Nat2Result | None:
    def compute() -> Nat2Result | None:
        config = _config(ctx)
        matcher = ctx.knowledge.valueset("nat2-observations")
        for observation in ctx.record.observations_in(matcher):
            result = read_nat2(observation, config)
            if result is not None and result.phenotype != INDETERMINATE:
                return result
        return None

    return ctx.memo("nat2", compute)


def nat2_poor_metabolizer(ctx: RuleContext) -> list[Finding]:
    orders = ctx.amifampridine_orders()
    if not orders:
        return []
    result = nat2_status(ctx)
    if result is None:
        ctx.note(TOPIC, "no readable NAT2 result")
        return []
    ctx.note(TOPIC, f"NAT2 {result.phenotype}: Observation/{result.observation.get('id')}")
    if result.phenotype != POOR:
        return []
    cited = ctx.record.cited([result.observation])
    if not cited:
        return []
    day = effective_date(result.observation)
    findings = []
    for order in orders:
        advice = lowest_start_advice(ctx, order, "NAT2 poor metabolizer")
        findings.append(
            Finding(
                topic=TOPIC,
                params={
                    "drug": order.name,
                    "result": result.evidence,
                    "result_date": day.isoformat() if day else "date not recorded",
                    "advice": advice.sentence,
                },
                order=order,
                suggestions=advice.suggestions,
            )
        )
    return findings
