"""NAT2 status and the nat2-poor-metabolizer rule, from FHIR JSON with no Flask and no database."""

from __future__ import annotations

from typing import Any

from helpers.builders import LOINC, PATIENT_ID, amifampridine_order, rule_context

from cds_service.facts import POOR
from cds_service.rules.nat2 import nat2_poor_metabolizer


def nat2_result(**value: Any) -> dict[str, Any]:
    """A NAT2 Observation (LOINC 53040-2 with NAT2 named in its text) with the given value[x]."""
    return {
        "resourceType": "Observation",
        "id": "obs-nat2",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "53040-2"}], "text": "NAT2 acetylator phenotype"},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": "2025-02-03",
        **value,
    }


def poor_coded() -> dict[str, Any]:
    return nat2_result(
        valueCodeableConcept={
            "coding": [{"system": LOINC, "code": "LA9657-3", "display": "Poor metabolizer"}]
        }
    )


def test_a_coded_poor_phenotype_fires_with_the_lowest_start() -> None:
    ctx = rule_context(amifampridine_order(mg=10, per_day=3), nat2=[poor_coded()])
    assert ctx.facts.nat2 is not None and ctx.facts.nat2.phenotype == POOR
    [finding] = nat2_poor_metabolizer(ctx)
    assert finding.topic == "nat2-poor-metabolizer"
    assert finding.params["result_date"] == "2025-02-03"
    assert "LA9657-3" in finding.params["result"]
    assert [s.label for s in finding.suggestions] == [
        "Start at the lowest initial dose: 5 mg three times a day (15 mg/day)"
    ]


def test_a_genotype_with_two_slow_alleles_is_poor() -> None:
    ctx = rule_context(amifampridine_order(), nat2=[nat2_result(valueString="NAT2*5/*6")])
    assert ctx.facts.nat2 is not None and ctx.facts.nat2.phenotype == POOR
    assert [f.topic for f in nat2_poor_metabolizer(ctx)] == ["nat2-poor-metabolizer"]


def test_an_intermediate_genotype_gives_no_card() -> None:
    ctx = rule_context(amifampridine_order(), nat2=[nat2_result(valueString="NAT2*4/*5")])
    assert ctx.facts.nat2 is not None and ctx.facts.nat2.phenotype == "intermediate"
    assert nat2_poor_metabolizer(ctx) == []


def test_a_negated_slow_acetylator_text_is_not_poor() -> None:
    ctx = rule_context(amifampridine_order(), nat2=[nat2_result(valueString="not a slow acetylator")])
    assert nat2_poor_metabolizer(ctx) == []


def test_no_nat2_result_gives_no_card_and_a_note() -> None:
    ctx = rule_context(amifampridine_order())
    assert ctx.facts.nat2 is None and nat2_poor_metabolizer(ctx) == []
    assert ("nat2-poor-metabolizer", "no readable NAT2 result") in ctx.notes
