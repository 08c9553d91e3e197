"""Real Synthea patients (../shared/test-data/synthea) given an amifampridine draft: the cards their
records call for, and never an error. None of the three has a seizure disorder, an aminopyridine
allergy, liver disease, NAT2 results or an interacting drug, and all are adults with recent weights.
Mafalda Turcotte's blood creatinine (LOINC 38483-4) gives a Cockcroft-Gault clearance of 79 mL/min:
renal impairment, whose card carries the lowest starting dose (so no separate starting-dose card).
The other two have normal renal function (Gayla Ferry's latest eGFR is 152): a 10 mg three-times-a-day
start raises nothing, a 20 mg start only the starting-dose card."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.knowledge.loader import load_knowledge
from cds_service.record import has_code

ROOT = Path(__file__).resolve().parents[2]
SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "test-data" / "synthea"
PATIENTS = sorted(SYNTHEA.glob("*.json.gz")) if SYNTHEA.is_dir() else []
KNOWLEDGE = load_knowledge(ROOT / "cards")

pytestmark = pytest.mark.skipif(not PATIENTS, reason=f"Synthea test data not found in {SYNTHEA}")


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def build_request(path: Path, mg_per_dose: float) -> dict[str, Any]:
    bundle = json.loads(gzip.decompress(path.read_bytes()))
    resources = [entry["resource"] for entry in bundle["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")

    def of(kind: str) -> list[dict[str, Any]]:
        return [r for r in resources if r["resourceType"] == kind]

    def observations(valueset: str) -> list[dict[str, Any]]:
        return [o for o in of("Observation") if has_code(o, KNOWLEDGE.valueset(valueset))]

    draft = {
        "resourceType": "MedicationRequest",
        "id": "synthea-amifampridine-draft",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient['id']}"},
        "authoredOn": "2021-06-01",
        "medicationCodeableConcept": {"text": "Firdapse 10 MG Oral Tablet"},
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": mg_per_dose, "unit": "mg", "code": "mg"}}],
            }
        ],
    }
    return {
        "hook": "order-sign",
        "hookInstance": "5b6f1f0e-58a4-4c5e-9a51-3c1f0e3b7a10",
        "context": {
            "userId": "Practitioner/synthea-test",
            "patientId": patient["id"],
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]},
        },
        "prefetch": {
            "patient": patient,
            "medications": _searchset([m for m in of("MedicationRequest") if m.get("status") == "active"]),
            "conditions": _searchset(of("Condition")),
            "allergies": _searchset(of("AllergyIntolerance")),
            "weight": _searchset(observations("body-weight-observations")),
            "renal": _searchset(observations("renal-function-observations")),
            "nat2": _searchset(observations("nat2-observations")),
        },
    }


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = Settings.from_env({"CDS_AUTH": "off", "CDS_DATA_DIR": str(tmp_path_factory.mktemp("data"))})
    return create_app(settings).test_client()


# Derek Becker's newest serum creatinine (2020-04-22) is 405 days before the order: older than
# CDS_RENAL_MAX_AGE_DAYS, so renal function is unknown and a data-unavailable card says so.
EXPECTED = {
    ("Derek_Becker", 10): ["data-unavailable"],
    ("Derek_Becker", 20): ["data-unavailable", "starting-dose"],
    ("Gayla_Ferry", 10): [],
    ("Gayla_Ferry", 20): ["starting-dose"],
    ("Mafalda_Turcotte", 10): ["renal-impairment"],
    ("Mafalda_Turcotte", 20): ["renal-impairment"],
}


def _name(path: Path) -> str:
    return "_".join(path.name.split("_")[:2])


@pytest.mark.parametrize("path", PATIENTS, ids=_name)
@pytest.mark.parametrize("mg_per_dose", [10, 20])
def test_synthea_patient_gets_the_cards_the_record_calls_for(
    client: Any, path: Path, mg_per_dose: float
) -> None:
    expected = EXPECTED[(_name(path), mg_per_dose)]
    response = client.post("/cds-services/amifampridine-order-sign", json=build_request(path, mg_per_dose))
    assert response.status_code == 200, response.get_data(as_text=True)
    cards = response.get_json()["cards"]
    assert sorted(c["source"]["topic"]["code"] for c in cards) == expected, [c["summary"] for c in cards]


def test_gayla_ferry_renal_history_is_read_but_normal_now(client: Any) -> None:
    """Her 2018 eGFR was 85 (impaired) but the latest (2020) is 152: the newest result decides."""
    path = next(p for p in PATIENTS if p.name.startswith("Gayla_Ferry"))
    request = build_request(path, 10)
    egfr = request["prefetch"]["renal"]["entry"]
    assert len(egfr) >= 3
    newest = max(egfr, key=lambda e: e["resource"]["effectiveDateTime"])["resource"]
    newest["valueQuantity"]["value"] = 60.0  # the same record with a worse latest result
    response = client.post("/cds-services/amifampridine-order-sign", json=request)
    cards = response.get_json()["cards"]
    assert [c["source"]["topic"]["code"] for c in cards] == ["renal-impairment"]
    assert "stand-in" in cards[0]["detail"]
