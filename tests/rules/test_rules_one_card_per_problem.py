"""One card per problem per order, and one fix that clears them (issue 17, items 2 and 3), through the HTTP
API: interaction cards merged per amifampridine order, the dose problems of an order in one card whose
topics extension lists them, its one update suggestion raising no dose card when signed, and two current
amifampridine orders with no priorPrescription link that together exceed a cap."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers.builders import (
    PATIENT_ID,
    amifampridine_order,
    current_amifampridine,
    empty_prefetch,
    observation,
    order_sign,
    patient,
    searchset,
)

from cds_service.app import create_app
from cds_service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
URL = "/cds-services/amifampridine-order-sign"
TOPICS = "amifampridine-cds.topics"
UCUM = "http://unitsofmeasure.org"
DOSE_TOPICS = {"dose-single-max", "dose-daily-max", "starting-dose", "titration-step"}
LOWEST_START_TOPICS = {"renal-impairment", "hepatic-impairment", "nat2-poor-metabolizer"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data_dir = tmp_path_factory.mktemp("data")
    app = create_app(Settings.from_env({"CDS_AUTH": "off", "CDS_DATA_DIR": str(data_dir)}))
    return app.test_client()


def cards_for(client: Any, draft: dict[str, Any], prefetch: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(URL, json=order_sign(draft, prefetch=prefetch))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


def fixture_resource(case: str, key: str) -> dict[str, Any]:
    """The first resource of a fixture's prefetch ``key``, made this test patient's."""
    request = json.loads((ROOT / "fixtures" / "requests" / f"{case}.json").read_text(encoding="utf-8"))
    resource = copy.deepcopy(request["prefetch"][key]["entry"][0]["resource"])
    resource["subject"] = {"reference": f"Patient/{PATIENT_ID}"}
    return resource


def co_drug(order_id: str, display: str, rxnorm: str, authored: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": authored,
        "medicationCodeableConcept": {
            "coding": [
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm, "display": display}
            ]
        },
    }


def in_tablets(order: dict[str, Any], tablets: float) -> dict[str, Any]:
    """The order with its dose as a count of 10 mg tablets."""
    order = copy.deepcopy(order)
    quantity = {"value": tablets, "unit": "tablet", "system": UCUM, "code": "{tbl}"}
    order["dosageInstruction"][0]["doseAndRate"] = [{"doseQuantity": quantity}]
    return order


def topics_of(card: dict[str, Any]) -> list[str]:
    return card["extension"][TOPICS]


def is_dose_card(card: dict[str, Any]) -> bool:
    """A card about a dose problem: a dose topic among its topics, or a lowest-start card with a fix."""
    covered = set(topics_of(card))
    return bool(covered & DOSE_TOPICS) or (bool(covered & LOWEST_START_TOPICS) and "suggestions" in card)


def the_update(card: dict[str, Any]) -> dict[str, Any]:
    [suggestion] = card["suggestions"]
    [action] = suggestion["actions"]
    assert action["type"] == "update"
    return action["resource"]


# --- interaction cards: one per topic per amifampridine order ------------------------------------------


def test_pyridostigmine_renewed_twice_gives_one_cholinergic_card_with_both_orders(client: Any) -> None:
    prefetch = empty_prefetch()
    renewals = [
        co_drug("pyr-1", "pyridostigmine bromide 60 MG Oral Tablet", "903857", "2025-03-10"),
        co_drug("pyr-2", "pyridostigmine bromide 60 MG Oral Tablet", "903857", "2026-03-10"),
    ]
    prefetch["medications"] = searchset(*renewals)
    [card] = cards_for(client, amifampridine_order(), prefetch)
    assert card["source"]["topic"]["code"] == "cholinergic-drug"
    assert topics_of(card) == ["cholinergic-drug"]
    # One line for the drug, with the status of each of its orders.
    assert "active prescription since 2025-03-10; active prescription since 2026-03-10" in card["detail"]
    assert card["detail"].count("pyridostigmine bromide 60 MG Oral Tablet") == 2  # direction and list


def test_sertraline_renewed_three_times_gives_one_seizure_threshold_card(client: Any) -> None:
    prefetch = empty_prefetch()
    prefetch["medications"] = searchset(
        *(co_drug(f"ser-{n}", "sertraline 50 MG Oral Tablet", "312940", f"202{n}-01-15") for n in (4, 5, 6))
    )
    cards = cards_for(client, amifampridine_order(), prefetch)
    assert [c["source"]["topic"]["code"] for c in cards] == ["seizure-threshold-drug"]
    assert topics_of(cards[0]) == ["seizure-threshold-drug"]
    for year in (2024, 2025, 2026):
        assert f"active prescription since {year}-01-15" in cards[0]["detail"]


# --- the dose card: one per order, one coherent fix --------------------------------------------------


def test_a_new_start_above_both_caps_in_tablets_gets_one_card_and_a_fix_in_tablets(client: Any) -> None:
    draft = in_tablets(amifampridine_order(per_day=4), 3)  # 3 × 10 mg tablets 4 times a day: 120 mg/day
    prefetch = empty_prefetch()
    [card] = cards_for(client, draft, prefetch)
    assert card["source"]["topic"]["code"] == "dose-daily-max" and card["indicator"] == "critical"
    assert topics_of(card) == ["dose-daily-max", "dose-single-max", "starting-dose"]
    # The other problems are named once, after the lead's own arithmetic.
    assert "Also on this order:" in card["detail"] and card["detail"].count("120 mg/day") >= 1
    update = the_update(card)
    dosage = update["dosageInstruction"][0]
    # Within the initial range of a new start (not 20 mg four times a day = 80 mg/day), in tablets.
    assert dosage["doseAndRate"][0]["doseQuantity"] == {
        "value": 1,
        "unit": "tablet",
        "system": UCUM,
        "code": "{tbl}",
    }
    assert dosage["timing"]["repeat"] == {"frequency": 3, "period": 1, "periodUnit": "d"}
    assert card["suggestions"][0]["label"] == "Reduce to 1 tablet (10 mg) three times a day (30 mg/day)"
    assert (
        update["id"] == draft["id"]
        and update["medicationCodeableConcept"] == draft["medicationCodeableConcept"]
    )
    assert cards_for(client, update, prefetch) == []


def test_a_fix_keeps_the_number_of_doses_when_only_the_dose_must_change(client: Any) -> None:
    draft = in_tablets(amifampridine_order(per_day=3), 2.5)  # 25 mg three times a day, a new start
    [card] = cards_for(client, draft, empty_prefetch())
    assert topics_of(card) == ["dose-single-max", "starting-dose"]
    dosage = the_update(card)["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 1
    assert dosage["timing"] == draft["dosageInstruction"][0]["timing"]  # the order's own timing kept


def test_renal_hepatic_and_nat2_on_a_new_start_give_one_card_at_the_lowest_dose(client: Any) -> None:
    prefetch = empty_prefetch()
    prefetch["renal"] = searchset(observation("2164-2", 50, "mL/min"))
    prefetch["conditions"] = searchset(fixture_resource("hepatic-cirrhosis", "conditions"))
    prefetch["nat2"] = searchset(fixture_resource("nat2-poor-implication", "nat2"))
    draft = amifampridine_order(mg=20, per_day=4)  # 80 mg/day: within the caps, far above the start
    [card] = cards_for(client, draft, prefetch)
    assert card["source"]["topic"]["code"] == "renal-impairment"
    assert topics_of(card) == ["renal-impairment", "hepatic-impairment", "nat2-poor-metabolizer"]
    assert (
        card["suggestions"][0]["label"]
        == "Start at the lowest initial dose: 5 mg three times a day (15 mg/day)"
    )
    again = cards_for(client, the_update(card), prefetch)
    # The conditions are still there (each its own card, at the lowest dose already), no dose problem.
    assert sorted(c["source"]["topic"]["code"] for c in again) == [
        "hepatic-impairment",
        "nat2-poor-metabolizer",
        "renal-impairment",
    ]
    assert not any(is_dose_card(c) for c in again)


def test_a_titration_step_and_a_cap_give_one_card_whose_fix_is_one_step_up(client: Any) -> None:
    prefetch = empty_prefetch()
    prefetch["medications"] = searchset(current_amifampridine(mg=20, per_day=3))  # 60 mg/day
    draft = amifampridine_order(mg=25, per_day=4)  # 100 mg/day in doses of 25 mg
    draft["priorPrescription"] = {"reference": "MedicationRequest/active-amf"}
    [card] = cards_for(client, draft, prefetch)
    assert topics_of(card) == ["dose-single-max", "titration-step"]
    dosage = the_update(card)["dosageInstruction"][0]
    # At most 65 mg/day in doses of at most 20 mg and whole 5 mg steps: 15 mg four times a day.
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 15
    assert dosage["timing"]["repeat"]["frequency"] == 4
    assert cards_for(client, the_update(card), prefetch) == []


def test_every_card_lists_its_own_topic_in_the_extension(client: Any) -> None:
    prefetch = empty_prefetch()
    prefetch["patient"] = patient("2022-01-01")  # four years old: below the minimum age
    cards = cards_for(client, amifampridine_order(mg=1, per_day=3), prefetch)
    assert sorted(c["source"]["topic"]["code"] for c in cards) == ["age-not-established", "weight-needed"]
    for card in cards:
        assert topics_of(card) == [card["source"]["topic"]["code"]]


def test_the_metrics_count_every_topic_a_dose_card_covers(client: Any) -> None:
    def count(topic: str) -> float:
        text = client.get("/metrics").get_data(as_text=True)
        found = re.search(rf'cds_cards_total{{indicator="critical",topic="{topic}"}} (\S+)', text)
        return float(found.group(1)) if found else 0.0

    before = {topic: count(topic) for topic in ("dose-daily-max", "dose-single-max", "starting-dose")}
    [card] = cards_for(client, amifampridine_order(mg=30, per_day=4), empty_prefetch())
    assert topics_of(card) == ["dose-daily-max", "dose-single-max", "starting-dose"]
    assert {topic: count(topic) - before[topic] for topic in before} == {
        "dose-daily-max": 1,
        "dose-single-max": 1,
        "starting-dose": 1,
    }


# --- two current amifampridine orders with no priorPrescription link --------------------------------


def test_an_add_on_above_the_daily_cap_is_a_duplicate_card_naming_both_orders_and_the_total(
    client: Any,
) -> None:
    prefetch = empty_prefetch()
    prefetch["medications"] = searchset(current_amifampridine(mg=20, per_day=4))  # 80 mg/day
    add_on = amifampridine_order(mg=10, per_day=3)  # 30 mg/day more, no priorPrescription
    [card] = cards_for(client, add_on, prefetch)
    assert card["source"]["topic"]["code"] == "aminopyridine-duplicate" and card["indicator"] == "critical"
    assert topics_of(card) == ["aminopyridine-duplicate", "dose-daily-max", "dose-single-max"]
    assert "110 mg/day and 30 mg at once" in card["summary"]
    assert "10 mg × 3 times a day" in card["detail"] and "20 mg × 4 times a day" in card["detail"]
    [suggestion] = card["suggestions"]
    assert suggestion["actions"] == [
        {
            "type": "delete",
            "description": "Remove the draft order for amifampridine 10 MG Oral Tablet",
            "resourceId": "MedicationRequest/draft-amf",
        }
    ]
    # Linked to the current order it replaces, the same draft is a dose change: no card.
    linked = add_on | {"priorPrescription": {"reference": "MedicationRequest/active-amf"}}
    assert cards_for(client, linked, prefetch) == []


def test_an_add_on_within_the_caps_stays_a_dose_change(client: Any) -> None:
    prefetch = empty_prefetch()
    prefetch["medications"] = searchset(current_amifampridine(mg=10, per_day=3))  # 30 mg/day
    prn = amifampridine_order(mg=10, per_day=2)
    prn["dosageInstruction"][0]["asNeededBoolean"] = True
    assert cards_for(client, prn, prefetch) == []  # 50 mg/day and 20 mg at once together: within the caps
