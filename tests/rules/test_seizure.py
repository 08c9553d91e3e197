"""The seizure-history rule, from FHIR JSON with no Flask and no database."""

from __future__ import annotations

from helpers.builders import SNOMED, amifampridine_order, epilepsy, ibuprofen_order, rule_context

from cds_service.rules.seizure import seizure_history

FEBRILE = {"coding": [{"system": SNOMED, "code": "41497008", "display": "Febrile convulsion"}]}
REFUTED = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}]
}


def test_epilepsy_is_a_contraindication() -> None:
    ctx = rule_context(amifampridine_order(), conditions=[epilepsy()])
    [finding] = seizure_history(ctx)
    assert finding.topic == "seizure-history" and finding.variant is None
    assert finding.params["condition"] == "Epilepsy" and "active" in finding.params["conditions"]


def test_febrile_seizures_only_is_the_febrile_variant() -> None:
    ctx = rule_context(amifampridine_order(), conditions=[epilepsy("cond-febrile", code=FEBRILE)])
    [finding] = seizure_history(ctx)
    assert finding.variant == "febrile"


def test_febrile_seizures_and_epilepsy_is_the_contraindication() -> None:
    ctx = rule_context(amifampridine_order(), conditions=[epilepsy("cond-febrile", code=FEBRILE), epilepsy()])
    [finding] = seizure_history(ctx)
    assert finding.variant is None


def test_a_refuted_epilepsy_does_not_count() -> None:
    ctx = rule_context(amifampridine_order(), conditions=[epilepsy(verificationStatus=REFUTED)])
    assert seizure_history(ctx) == []


def test_no_amifampridine_order_in_question_gives_no_card() -> None:
    ctx = rule_context(ibuprofen_order(), conditions=[epilepsy()])
    assert seizure_history(ctx) == []
