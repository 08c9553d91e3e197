"""The name backstop through the HTTP API: a Condition or an allergy whose code is in no value set is
matched by a name in its text or a coding display (issue 14 item 2), unless a cue in the same clause
excludes it (negation, family history, rule out, "no history of", "no known allergies"). A code always
wins over its text."""

from __future__ import annotations

from typing import Any

import pytest
from helpers.builders import (
    PATIENT_ID,
    SNOMED,
    amifampridine_order,
    empty_prefetch,
    order_sign,
    searchset,
    topics,
)
from helpers.fixture_calls import cards_for, make_client

SEIZURE = "seizure-history"
HEPATIC = "hepatic-impairment"
RENAL = "renal-impairment"
ALLERGY = "aminopyridine-hypersensitivity"
LOCAL = "urn:oid:2.16.840.1.113883.3.9999.5.1"  # a site's own problem-list code system
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_client(tmp_path_factory.mktemp("data"))


def condition(
    text: str | None = None, *, code: str = "LOC-1", display: str | None = None, system: str = LOCAL
) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    concept: dict[str, Any] = {"coding": [coding]}
    if text is not None:
        concept["text"] = text
    return {
        "resourceType": "Condition",
        "id": "cond-under-test",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "code": concept,
        "onsetDateTime": "2010-05-01",
    }


def allergy(text: str, coding: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": text}
    if coding:
        concept["coding"] = coding
    return {
        "resourceType": "AllergyIntolerance",
        "id": "allergy-under-test",
        "patient": {"reference": f"Patient/{PATIENT_ID}"},
        "code": concept,
    }


def cards_with(client: Any, *, conditions: tuple[dict[str, Any], ...] = (), allergies: tuple = ()) -> list:
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(*conditions)
    prefetch["allergies"] = searchset(*allergies)
    return cards_for(client, order_sign(amifampridine_order(), prefetch=prefetch))


def topics_with(client: Any, **resources: Any) -> list[str]:
    return topics(cards_with(client, **resources))


# --- names that match ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (condition("Epilepsy"), [SEIZURE]),  # a local code, the name in code.text
        (condition(display="Convulsions"), [SEIZURE]),  # the name in a coding display only
        (condition("History of seizures"), [SEIZURE]),
        (condition("h/o epilepsy, well controlled on levetiracetam"), [SEIZURE]),
        (condition("Seizure-free for 5 years"), [SEIZURE]),  # seizure-free is a history of seizures
        (condition("Epilepsy; no seizures since 2010"), [SEIZURE]),  # the clause ends at ';'
        (condition("Suspected epilepsy"), [SEIZURE]),  # doubt is kept: a suspicion still warns
        (condition("Seizure not ruled out"), [SEIZURE]),  # a pseudo-negation
        (condition("Alcoholic cirrhosis of liver", code="999999999", system=SNOMED), [HEPATIC]),
        (condition(display="Hepatic failure"), [HEPATIC]),
        (condition("Chronic kidney disease stage 3"), [RENAL]),
    ],
)
def test_a_condition_named_but_not_coded_raises_its_card(
    client: Any, resource: dict[str, Any], expected: list[str]
) -> None:
    assert topics_with(client, conditions=(resource,)) == expected


def test_febrile_convulsions_by_name_is_the_febrile_warning(client: Any) -> None:
    (card,) = cards_with(client, conditions=(condition("Febrile convulsions in childhood"),))
    assert card["source"]["topic"]["code"] == SEIZURE
    assert card["indicator"] == "warning"
    (card,) = cards_with(client, conditions=(condition("Convulsions"),))
    assert card["indicator"] == "critical"


def test_end_stage_renal_disease_by_name_is_critical(client: Any) -> None:
    (card,) = cards_with(client, conditions=(condition("ESRD on hemodialysis"),))
    assert card["source"]["topic"]["code"] == RENAL
    assert card["indicator"] == "critical"


def test_ckd_not_on_dialysis_is_impairment_not_end_stage(client: Any) -> None:
    """The negation reaches "dialysis" (end-stage), not "chronic kidney disease" before it."""
    (card,) = cards_with(client, conditions=(condition("Chronic kidney disease stage 4, not on dialysis"),))
    assert card["source"]["topic"]["code"] == RENAL
    assert card["indicator"] == "warning"


# --- names that a cue excludes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "No seizures",
        "No history of seizures",
        "Denies seizures",
        "Negative for epilepsy",
        "Without convulsions",
        "Seizures: none",
        "Family history of epilepsy",
        "FH of seizure disorder",
        "Mother has epilepsy",
        "Epilepsy in mother",
        "Rule out seizure",
        "r/o seizure disorder",
        "Seizure disorder ruled out",
    ],
)
def test_an_excluded_seizure_name_raises_no_card(client: Any, text: str) -> None:
    assert topics_with(client, conditions=(condition(text),)) == []


@pytest.mark.parametrize(
    ("text", "card"),
    [
        ("No cirrhosis", HEPATIC),
        ("Family history of liver failure", HEPATIC),
        ("Not on dialysis", RENAL),
        ("Dialysis not required", RENAL),
        ("Rule out chronic kidney disease", RENAL),
    ],
)
def test_an_excluded_liver_or_kidney_name_raises_no_card(client: Any, text: str, card: str) -> None:
    assert card not in topics_with(client, conditions=(condition(text),))


def test_a_code_wins_over_its_text(client: Any) -> None:
    coded = condition("No seizures for 5 years", code="84757009", system=SNOMED)
    assert topics_with(client, conditions=(coded,)) == [SEIZURE]


def test_a_resolved_condition_named_epilepsy_is_still_a_history(client: Any) -> None:
    resolved = condition("Epilepsy")
    resolved["clinicalStatus"]["coding"][0]["code"] = "resolved"
    assert topics_with(client, conditions=(resolved,)) == [SEIZURE]


def test_a_refuted_condition_named_epilepsy_does_not_count(client: Any) -> None:
    refuted = condition("Epilepsy")
    refuted["verificationStatus"] = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "refuted"}
        ]
    }
    assert topics_with(client, conditions=(refuted,)) == []


# --- allergies ----------------------------------------------------------------------------------------


def test_an_allergy_named_in_text_raises_the_card(client: Any) -> None:
    assert topics_with(client, allergies=(allergy("Allergy to aminopyridines (rash)"),)) == [ALLERGY]


@pytest.mark.parametrize(
    "text",
    ["No known allergies", "No known allergy to amifampridine", "Denies aminopyridine allergy"],
)
def test_no_known_allergy_raises_no_card(client: Any, text: str) -> None:
    assert topics_with(client, allergies=(allergy(text),)) == []


def test_a_coded_allergy_wins_over_its_text(client: Any) -> None:
    coded = allergy(
        "No known allergy",
        [{"system": SNOMED, "code": "422654000", "display": "Amifampridine (substance)"}],
    )
    assert topics_with(client, allergies=(coded,)) == [ALLERGY]
