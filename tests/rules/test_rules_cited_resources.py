"""A finding never vanishes because a cited resource is not valid FHIR R4.

The rules read codes, statuses and dates defensively from the JSON; the FHIR R4 model check of a cited
resource is recorded for --explain, and the card is shown either way. Through the HTTP API, asserting
on each card's topic code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers.builders import topics
from helpers.fixture_calls import cards_for, make_client, request_for

PRESCRIBE = "/cds-services/amifampridine-medication-prescribe"


def _first(request: dict[str, Any], key: str) -> dict[str, Any]:
    return request["prefetch"][key]["entry"][0]["resource"]


def test_a_seizure_condition_with_a_malformed_date_still_gives_the_card(tmp_path: Path) -> None:
    request = request_for("seizure-epilepsy")
    _first(request, "conditions")["onsetDateTime"] = "2015-06-01T00:00"  # no seconds: not a FHIR dateTime
    assert topics(cards_for(make_client(tmp_path), request)) == ["seizure-history"]


def test_an_stu3_condition_on_the_stu3_hook_gives_the_card(tmp_path: Path) -> None:
    signed = request_for("seizure-epilepsy")
    condition = _first(signed, "conditions")
    condition["clinicalStatus"] = "active"  # STU3: plain codes
    condition["verificationStatus"] = "confirmed"
    prescribe = {
        "hook": "medication-prescribe",
        "hookInstance": "0b2f4f1e-6a55-4b55-9f7e-0f2a4b1d9c01",
        "context": {
            "userId": signed["context"]["userId"],
            "patientId": signed["context"]["patientId"],
            "medications": signed["context"]["draftOrders"],
        },
        "prefetch": signed["prefetch"],
    }
    assert topics(cards_for(make_client(tmp_path), prescribe, PRESCRIBE)) == ["seizure-history"]


def test_an_stu3_shaped_allergy_still_contraindicates(tmp_path: Path) -> None:
    request = request_for("allergy-dalfampridine")
    allergy = _first(request, "allergies")
    allergy["clinicalStatus"] = "active"
    allergy["verificationStatus"] = "confirmed"
    assert "aminopyridine-hypersensitivity" in topics(cards_for(make_client(tmp_path), request))


def _child_new_start(birth_date: str | None) -> dict[str, Any]:
    request = request_for("age-five-years")
    patient = request["prefetch"]["patient"]
    if birth_date is None:
        patient.pop("birthDate", None)
    else:
        patient["birthDate"] = birth_date
    return request


def test_without_a_birth_date_the_age_checks_are_reported_not_skipped(tmp_path: Path) -> None:
    cards = cards_for(make_client(tmp_path), _child_new_start(None))
    assert "data-unavailable" in topics(cards)
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "data-unavailable"]
    assert "minimum age (6 years)" in card["detail"]
    assert "no readable birthDate" in card["detail"]


def test_a_partial_birth_date_counts_as_the_youngest_age_it_can_mean(tmp_path: Path) -> None:
    request = _child_new_start("2019-09-01")
    order_day = request["context"]["draftOrders"]["entry"][0]["resource"]["authoredOn"][:10]
    year = int(order_day[:4]) - 6  # six this year at the earliest, five until 31 December at the latest
    request["prefetch"]["patient"]["birthDate"] = str(year)
    assert "age-not-established" in topics(cards_for(make_client(tmp_path), request))
