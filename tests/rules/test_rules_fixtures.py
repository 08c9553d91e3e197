"""Every clinical situation in fixtures/manifest.yaml through the HTTP API: exactly the expected card
topics, and cards of the right shape (CDS Hooks 2.0.1 and the project's conventions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.builders import assert_no_empty_fields

from cds_service.app import create_app
from cds_service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
MANIFEST = yaml.safe_load((FIXTURES / "manifest.yaml").read_text(encoding="utf-8"))
SERVICE = {
    "order-select": "amifampridine-order-select",
    "order-sign": "amifampridine-order-sign",
    "medication-prescribe": "amifampridine-medication-prescribe",
}
PREFETCH_KEYS = {"patient", "medications", "conditions", "allergies", "weight", "renal", "nat2"}
TOPICS = {
    concept["code"]
    for concept in json.loads((ROOT / "cards" / "card-topics.codesystem.json").read_text())["concept"]
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    data_dir = tmp_path_factory.mktemp("data")
    app = create_app(Settings.from_env({"CDS_AUTH": "off", "CDS_DATA_DIR": str(data_dir)}))
    return app.test_client()


def request_for(case_id: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "requests" / f"{case_id}.json").read_text(encoding="utf-8"))


def call(client: Any, case: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(f"/cds-services/{SERVICE[case['hook']]}", json=request_for(case["id"]))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert_no_empty_fields(body)  # the spec forbids null, "", [] and {} in a response
    return body["cards"]


@pytest.mark.parametrize("case", MANIFEST, ids=[case["id"] for case in MANIFEST])
def test_case_gives_exactly_its_topics(client: Any, case: dict[str, Any]) -> None:
    cards = call(client, case)
    topics = sorted(card["source"]["topic"]["code"] for card in cards)
    assert topics == case["expected"], [card["summary"] for card in cards]
    # Every card lists the problem topics it covers, its own first (one card per problem per order).
    covers = case.get("covers") or {}
    for card in cards:
        code = card["source"]["topic"]["code"]
        assert card["extension"]["amifampridine-cds.topics"] == covers.get(code, [code])


@pytest.mark.parametrize("case", MANIFEST, ids=[case["id"] for case in MANIFEST])
def test_cards_have_the_right_shape(client: Any, case: dict[str, Any]) -> None:
    patient_id = request_for(case["id"])["context"]["patientId"]
    for card in call(client, case):
        assert 0 < len(card["summary"]) < 140
        assert card["indicator"] in {"info", "warning", "critical"}
        assert card["source"]["label"].startswith("FIRDAPSE prescribing information")
        assert "§" in card["source"]["label"]
        assert card["source"]["url"].startswith("https://dailymed.nlm.nih.gov/")
        assert card["source"]["topic"]["code"] in TOPICS
        assert "[" not in card["summary"], "a template placeholder was left unfilled"
        assert "§" in card["detail"]
        reasons = card["overrideReasons"]
        assert reasons and all(reason["display"] and reason["code"] for reason in reasons)
        if "suggestions" in card:
            assert card["selectionBehavior"] in {"at-most-one", "any"}
            assert sum(bool(s.get("isRecommended")) for s in card["suggestions"]) <= 1
            for suggestion in card["suggestions"]:
                assert suggestion["uuid"] and suggestion["label"]
                for action in suggestion.get("actions", []):
                    assert action["description"]
                    if action["type"] == "update":
                        check_complete_order(action["resource"], patient_id)
                    elif action["type"] == "delete":
                        assert action["resourceId"].startswith("MedicationRequest/")


def check_complete_order(resource: dict[str, Any], patient_id: str) -> None:
    for key in ("resourceType", "id", "status", "intent", "subject", "dosageInstruction"):
        assert resource.get(key), key
    assert resource["subject"]["reference"] == f"Patient/{patient_id}"
    assert "medicationCodeableConcept" in resource or "medicationReference" in resource
    from fhir.resources.R4B.medicationrequest import MedicationRequest

    MedicationRequest.model_validate(resource)  # a valid R4 MedicationRequest, not just the right keys


def test_manifest_covers_every_topic_with_a_trigger_and_near_misses() -> None:
    triggered = {topic for case in MANIFEST for topic in case["expected"]}
    assert triggered == TOPICS
    assert sum(1 for case in MANIFEST if case["expected"] == []) >= len(TOPICS) - 2
    assert len({case["id"] for case in MANIFEST}) == len(MANIFEST)


@pytest.mark.parametrize("case", MANIFEST, ids=[case["id"] for case in MANIFEST])
def test_fixture_is_a_complete_self_consistent_request(case: dict[str, Any]) -> None:
    request = request_for(case["id"])
    assert request["hook"] == case["hook"]
    patient_id = request["context"]["patientId"]
    assert set(request["prefetch"]) == PREFETCH_KEYS
    assert request["prefetch"]["patient"]["id"] == patient_id
    for key, value in request["prefetch"].items():
        if key == "patient" or value is None or value["resourceType"] != "Bundle":
            continue
        for entry in value["entry"]:
            resource = entry["resource"]
            assert resource["id"]
            owner = resource.get("subject") or resource.get("patient")
            assert owner == {"reference": f"Patient/{patient_id}"}
            if key == "medications":
                assert resource["status"] == "active"


def test_clean_adult_new_start_at_10mg_tid_raises_no_card(client: Any) -> None:
    request = request_for("clean-adult-new-start")
    dosage = request["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 10
    assert dosage["timing"]["repeat"]["frequency"] == 3
    assert call(client, {"id": "clean-adult-new-start", "hook": "order-sign"}) == []
