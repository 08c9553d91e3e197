"""Variations on the fixtures that the manifest cannot express: site configuration, units, suggestion
contents, both directions of an interaction, and the readings behind the cards."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from helpers.builders import topics
from helpers.fixture_calls import KNOWLEDGE, cards_for, first_draft, make_client, request_for, update_resource

from cds_service.dose import compute_dose
from cds_service.facts.nat2 import read_nat2
from cds_service.knowledge.dose_table import Regimen
from cds_service.rules.suggest import coherent_regimen


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_client(tmp_path_factory.mktemp("data"))


def test_pinning_the_pre_2024_caps_flags_100_mg_a_day(tmp_path: Path) -> None:
    request = request_for("dose-daily-100mg-exactly")
    assert cards_for(make_client(tmp_path / "a"), request) == []
    pinned = make_client(tmp_path / "b", CDS_DOSE_CAPS_VERSION="pre-2024")
    (card,) = cards_for(pinned, request)
    assert card["source"]["topic"]["code"] == "dose-daily-max"
    assert "80 mg" in card["summary"] and "before 5/2024" in card["detail"]
    dose = update_resource(card)["dosageInstruction"][0]
    assert dose["doseAndRate"][0]["doseQuantity"]["value"] * dose["timing"]["repeat"]["frequency"] <= 80


def test_weight_age_limit_is_configurable(tmp_path: Path) -> None:
    request = request_for("weight-stale-child")
    assert topics(cards_for(make_client(tmp_path / "a"), request)) == ["weight-needed"]
    assert cards_for(make_client(tmp_path / "b", CDS_WEIGHT_MAX_AGE_DAYS="365"), request) == []


def test_single_dose_card_suggests_the_same_daily_amount_in_more_doses(client: Any) -> None:
    (card,) = cards_for(client, request_for("dose-single-40mg"))
    assert card["indicator"] == "critical"
    assert "**40 mg per dose**, 80 mg/day" in card["detail"]
    resource = update_resource(card)
    dose = resource["dosageInstruction"][0]
    assert dose["doseAndRate"][0]["doseQuantity"] == {
        "value": 20,
        "unit": "mg",
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    }
    assert dose["timing"]["repeat"] == {"frequency": 4, "period": 1, "periodUnit": "d"}
    assert resource["id"] == first_draft(request_for("dose-single-40mg"))["id"]
    assert resource["priorPrescription"]  # everything else of the draft is kept


def test_child_under_45kg_uses_half_caps_and_a_16_year_old_at_50kg_does_not(client: Any) -> None:
    child = cards_for(client, request_for("child-38kg-15mg"))
    single = next(c for c in child if c["source"]["topic"]["code"] == "dose-single-max")
    assert (
        "**10 mg** for children under 45 kg" in single["detail"]
        and "38.0 kg on 2025-02-25" in single["detail"]
    )
    teen = request_for("child-16y-50kg")
    assert cards_for(client, teen) == []
    teen["prefetch"]["weight"]["entry"][0]["resource"]["valueQuantity"]["value"] = 44
    [card] = cards_for(client, teen)  # one dose card for both caps
    assert card["extension"]["amifampridine-cds.topics"] == ["dose-daily-max", "dose-single-max"]


def test_weight_in_pounds_is_converted(client: Any) -> None:
    request = request_for("weight-grams-child")
    quantity = request["prefetch"]["weight"]["entry"][0]["resource"]["valueQuantity"]
    quantity.update({"value": 88, "unit": "[lb_av]", "code": "[lb_av]"})  # 39.9 kg: the child row
    (card,) = cards_for(client, request)
    assert card["source"]["topic"]["code"] == "starting-dose"
    assert "39.9 kg (recorded as 88 lb)" in card["detail"]  # the unit in words, not its UCUM code


def test_cockcroft_gault_reads_umol_per_litre_and_says_how(client: Any) -> None:
    request = request_for("renal-cockcroft-gault")
    quantity = request["prefetch"]["renal"]["entry"][0]["resource"]["valueQuantity"]
    quantity.update({"value": 141.44, "unit": "umol/L", "code": "umol/L"})
    (card,) = cards_for(client, request)
    assert card["source"]["topic"]["code"] == "renal-impairment"
    assert (
        "Cockcroft-Gault" in card["detail"] and "1.60 mg/dL" in card["detail"] and "× 0.85" in card["detail"]
    )
    assert "27 mL/min" in card["summary"]
    assert update_resource(card)["dosageInstruction"][0]["timing"]["repeat"]["frequency"] == 3


def test_egfr_is_named_as_a_stand_in(client: Any) -> None:
    (card,) = cards_for(client, request_for("renal-egfr-standin"))
    assert "stand-in" in card["detail"] and "55 mL/min" in card["summary"]


def test_end_stage_renal_disease_is_critical_without_a_dose_suggestion(client: Any) -> None:
    (card,) = cards_for(client, request_for("renal-esrd-dialysis"))
    assert card["indicator"] == "critical" and "no dose recommendation" in card["detail"]
    assert "suggestions" not in card


def test_measured_clearance_below_15_is_end_stage(client: Any) -> None:
    request = request_for("renal-crcl-45")
    request["prefetch"]["renal"]["entry"][0]["resource"]["valueQuantity"]["value"] = 12
    (card,) = cards_for(client, request)
    assert card["indicator"] == "critical"


def test_lowest_start_cards_suppress_the_starting_dose_card(client: Any) -> None:
    request = request_for("hepatic-cirrhosis")
    (card,) = cards_for(client, request)
    assert card["source"]["topic"]["code"] == "hepatic-impairment"
    assert "60 mg/day" in card["detail"] and update_resource(card)["dosageInstruction"][0]["text"]
    request["prefetch"]["conditions"]["entry"] = []
    assert topics(cards_for(client, request)) == ["starting-dose"]


def test_nat2_on_a_dose_change_says_so_without_an_update(client: Any) -> None:
    (card,) = cards_for(client, request_for("nat2-legacy-slow"))
    assert "slow acetylator" in card["detail"] and "dose change" in card["detail"]
    assert "suggestions" not in card


@pytest.mark.parametrize(
    ("observation", "phenotype"),
    [
        ({"code": {"text": "NAT2 genotype"}, "valueString": "*5/*5"}, "poor"),
        ({"code": {"text": "NAT2"}, "valueString": "NAT2*6A/*7B"}, "poor"),
        ({"code": {"text": "NAT2"}, "valueString": "NAT2*4/*4"}, "rapid"),
        ({"code": {"text": "NAT2"}, "valueString": "NAT2*4/*99"}, "indeterminate"),
        ({"code": {"text": "CYP2D6"}, "valueString": "poor metabolizer"}, None),
        (
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "53040-2"}]},
                "component": [
                    {
                        "code": {"coding": [{"system": "http://loinc.org", "code": "48018-6"}]},
                        "valueCodeableConcept": {"coding": [{"code": "HGNC:7646", "display": "NAT2"}]},
                    }
                ],
                "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "LA9657-3"}]},
            },
            "poor",
        ),
    ],
)
def test_nat2_shapes(observation: dict[str, Any], phenotype: str | None) -> None:
    result = read_nat2({"resourceType": "Observation", **observation}, KNOWLEDGE.data["nat2"])
    assert (result.phenotype if result else None) == phenotype


def test_interaction_card_is_the_same_both_ways(client: Any) -> None:
    forward = cards_for(client, request_for("seizure-threshold-sertraline"))
    reverse = cards_for(client, request_for("reverse-sertraline-draft"))
    assert topics(forward) == topics(reverse) == ["seizure-threshold-drug"]
    assert "sertraline" in forward[0]["summary"] and "sertraline" in reverse[0]["summary"]
    assert "suggestions" not in forward[0]  # the active sertraline is not ours to delete
    (action,) = reverse[0]["suggestions"][0]["actions"]
    assert action == {
        "type": "delete",
        "description": "Remove the draft order for sertraline 50 MG Oral Tablet",
        "resourceId": f"MedicationRequest/{first_draft(request_for('reverse-sertraline-draft'))['id']}",
    }


def test_cholinergic_card_offers_the_intended_combination_reason(client: Any) -> None:
    (card,) = cards_for(client, request_for("cholinergic-pyridostigmine"))
    assert card["indicator"] == "warning"
    assert "Intended combination, monitored" in [r["display"] for r in card["overrideReasons"]]
    assert "often intended in LEMS" in card["summary"]


def test_order_select_only_selections_raise_cards(client: Any) -> None:
    request = request_for("order-select-unrelated-selection")
    url = "/cds-services/amifampridine-order-select"
    assert cards_for(client, request, url) == []
    request["context"]["selections"] = [f"MedicationRequest/{first_draft(request)['id']}"]
    [card] = cards_for(client, request, url)
    covered = ["dose-daily-max", "dose-single-max", "starting-dose"]
    assert card["extension"]["amifampridine-cds.topics"] == covered


def test_order_select_of_a_co_drug_next_to_an_unselected_amifampridine_draft_warns(client: Any) -> None:
    # The sandbox's Rx View: amifampridine already drafted in this session, sertraline now selected. The
    # selected drug meets the co-drafted amifampridine: the same card as the other way round.
    request = request_for("order-select-codrafted-sertraline")
    url = "/cds-services/amifampridine-order-select"
    drafts = [entry["resource"] for entry in request["context"]["draftOrders"]["entry"]]
    [sertraline] = [d for d in drafts if "amifampridine" not in json.dumps(d).lower()]
    request["context"]["selections"] = [f"MedicationRequest/{sertraline['id']}"]
    [card] = cards_for(client, request, url)
    assert card["source"]["topic"]["code"] == "seizure-threshold-drug"
    # Only the selected order is in question: no dose card about the unselected amifampridine draft.
    assert card["extension"]["amifampridine-cds.topics"] == ["seizure-threshold-drug"]


def test_no_amifampridine_anywhere_no_card_even_with_interacting_drugs(client: Any) -> None:
    request = request_for("cholinergic-without-amifampridine")
    other = request_for("seizure-threshold-sertraline")
    sertraline = copy.deepcopy(other["prefetch"]["medications"]["entry"][0])
    # The order comes from another fixture: make it this patient's (prefetch about another patient is
    # not judged at all; tests/test_protocol_prefetch.py).
    sertraline["resource"]["subject"]["reference"] = f"Patient/{request['context']['patientId']}"
    request["prefetch"]["medications"]["entry"].append(sertraline)
    assert cards_for(client, request) == []


def _regimen_for(mg: float, per_day: int, **limits: Any) -> tuple[float, int] | None:
    order = {
        "resourceType": "MedicationRequest",
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg", "code": "mg"}}],
            }
        ],
    }
    regimen = coherent_regimen(compute_dose(order), **limits)
    return None if regimen is None else (regimen.mg_per_dose, regimen.times_per_day)


def test_regimen_arithmetic() -> None:
    adult = {"max_single": 20, "max_daily": 100, "grids": ((5,),)}
    # The most a day that fits, the order's own number of doses first, then fewer doses.
    assert _regimen_for(30, 4, **adult) == (20, 5)  # 120 mg/day: 100 mg in five doses of 20
    assert _regimen_for(30, 3, **adult) == (20, 4)  # 90 mg/day: 80 mg, the most in 20 mg doses
    assert _regimen_for(20, 6, **adult) == (20, 5)  # 120 mg/day: 100 mg beats six doses of 15 (90 mg)
    assert _regimen_for(15, 3, max_single=10, max_daily=50, grids=((2.5,),)) == (10, 4)
    # A new start: the initial range is the daily limit; 4 doses of 20 become 3 of 10.
    assert _regimen_for(20, 4, max_single=20, max_daily=30, grids=((5,),)) == (10, 3)
    # Nothing on the grid fits: the table's regimen is the fallback, else nothing.
    child_lowest = {"max_single": 10, "max_daily": 5, "grids": ((2.5,),)}
    assert _regimen_for(5, 3, **child_lowest, fallbacks=(Regimen(1, 5),)) == (1, 5)
    assert _regimen_for(5, 3, **child_lowest) is None
    # A finer tier (1 mg of the suspension) only when nothing coarser fits.
    assert _regimen_for(5, 3, max_single=10, max_daily=5, grids=((2.5,), (1,))) == (1, 5)
    assert _regimen_for(5, 3, max_single=20, max_daily=12.5, grids=((5,), (1,))) == (4, 3)
    assert _regimen_for(5, 3, max_single=20, max_daily=30, grids=((5,), (1,))) == (5, 3)
