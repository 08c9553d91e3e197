"""The service against a real FHIR server, the way an EHR uses it.

For every fixture, two calls must give the same cards, equal to the manifest's: one with no prefetch (the
service queries the server: token searches, ``_sort``, paging) and one whose prefetch an EHR filled from the
service's own discovery templates against that server (which proves the templates are valid queries).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
import requests
from fixture_cases import bundle_of, manifest_cases, request_of
from flask import Flask
from helpers.builders import topics
from sekmet_server import SYNTHEA_DIR, FhirServer

from cds_service.hooks.prefetch import ResolvedData
from cds_service.hooks.validation import validate_call
from cds_service.integration.fixtures import Case
from cds_service.integration.offline import service_for
from cds_service.integration.simulator import FhirReader, build_request, fill_prefetch
from cds_service.patient_data import resolve
from cds_service.security import authorize_fhir_server

pytestmark = pytest.mark.integration

LOINC = "http://loinc.org"
AMIFAMPRIDINE_ORDER: dict[str, Any] = {
    "resourceType": "MedicationRequest",
    "id": "draft-firdapse",
    "status": "draft",
    "intent": "order",
    "medicationCodeableConcept": {
        "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": "69616-211-06"}],
        "text": "Firdapse (amifampridine) 10 MG Oral Tablet",
    },
    "dosageInstruction": [
        {
            "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [
                {"doseQuantity": {"value": 10, "unit": "mg", "system": "http://unitsofmeasure.org"}}
            ],
        }
    ],
}


def amifampridine_call(patient_id: str, fhir_server: str) -> dict[str, Any]:
    """order-sign for an amifampridine draft order, no prefetch, the FHIR server to query."""
    order = dict(AMIFAMPRIDINE_ORDER, subject={"reference": f"Patient/{patient_id}"})
    drafts = [order]
    return build_request(
        "order-sign", patient_id, "Practitioner/p1", drafts, prefetch=None, fhir_server=fhir_server
    )


def post_hook(app: Flask, body: dict[str, Any]) -> list[dict[str, Any]]:
    service = service_for(body)
    response = app.test_client().post(f"/cds-services/{service.id}", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["cards"]


def templates_of(app: Flask, hook: str) -> dict[str, str]:
    discovery = app.test_client().get("/cds-services").get_json()
    [service] = [s for s in discovery["services"] if s["hook"] == hook]
    return service["prefetch"]


def without_prefetch(body: dict[str, Any], fhir_server: str) -> dict[str, Any]:
    bare = copy.deepcopy(body)
    bare.pop("prefetch", None)
    bare.pop("fhirAuthorization", None)
    bare["fhirServer"] = fhir_server
    bare["hookInstance"] = str(uuid.uuid4())
    return bare


def with_template_prefetch(app: Flask, body: dict[str, Any], server: FhirServer) -> dict[str, Any]:
    """What an EHR sends: prefetch filled from the discovery templates against its FHIR server."""
    filled = copy.deepcopy(body)
    filled.pop("fhirServer", None)
    filled.pop("fhirAuthorization", None)
    filled["hookInstance"] = str(uuid.uuid4())
    reader = FhirReader(server.base_url, requests.Session(), None, timeout=30)
    context = body["context"]
    filled["prefetch"] = fill_prefetch(templates_of(app, body["hook"]), context, context["userId"], reader)
    return filled


@pytest.mark.parametrize("case", manifest_cases(), ids=lambda case: case.id)
def test_fixture_same_cards_from_server_queries_and_from_template_prefetch(
    case: Case, fhir_server: FhirServer, make_service: Callable[..., Flask]
) -> None:
    app = make_service()
    body = request_of(case)
    with fhir_server.loaded(bundle_of(case)):
        queried = post_hook(app, without_prefetch(body, fhir_server.base_url))
        prefetched = post_hook(app, with_template_prefetch(app, body, fhir_server))
    assert topics(queried) == topics(prefetched) == expected_with_server(body, case)


def expected_with_server(body: dict[str, Any], case: Case) -> list[str]:
    """The manifest's cards, less data-unavailable when the fixture is about the EHR failing to fetch a
    key (an OperationOutcome in prefetch): with the FHIR server at hand, the data is there."""
    failed = [
        v
        for v in (body.get("prefetch") or {}).values()
        if (v or {}).get("resourceType") == "OperationOutcome"
    ]
    if failed:
        return sorted(code for code in case.expected if code != "data-unavailable")
    return sorted(case.expected)


SYNTHEA = sorted(path.name.split(".")[0] for path in SYNTHEA_DIR.glob("*.json.gz"))


@pytest.mark.parametrize("name", SYNTHEA, ids=lambda name: name.split("_")[0])
def test_synthea_patient_same_cards_both_ways(
    name: str, synthea_patients: dict[str, str], fhir_server: FhirServer, make_service: Callable[..., Flask]
) -> None:
    app = make_service()
    patient_id = synthea_patients[name]
    body = amifampridine_call(patient_id, fhir_server.base_url)
    queried = post_hook(app, body)
    prefetched = post_hook(app, with_template_prefetch(app, body, fhir_server))
    assert topics(queried) == topics(prefetched)
    # None of the three has a seizure disorder on record.
    assert "seizure-history" not in topics(queried)


def fetch_as_service(app: Flask, body: dict[str, Any]) -> ResolvedData:
    """The service's own prefetch resolution (prefetch as sent, the FHIR server for the rest)."""
    rt = app.extensions["cds.runtime"]
    call = validate_call(body, service_for(body))
    with app.test_request_context():
        return resolve(call, rt.templates, rt.fhir_client, authorize_fhir_server)


def _weight(patient_id: str, number: int, day: date) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"paging-weight-{number}",
        "status": "final",
        "subject": {"reference": f"Patient/{patient_id}"},
        "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
        "effectiveDateTime": day.isoformat(),
        "valueQuantity": {"value": 60 + number / 10, "unit": "kg", "system": "http://unitsofmeasure.org"},
    }


def _heart_rate(patient_id: str, number: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"paging-pulse-{number}",
        "status": "final",
        "subject": {"reference": f"Patient/{patient_id}"},
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "effectiveDateTime": "2026-01-01",
        "valueQuantity": {"value": 70, "unit": "/min"},
    }


@pytest.fixture
def many_weights(fhir_server: FhirServer):
    """A patient with 45 body weights in shuffled order (more pages than one) and 10 heart rates."""
    patient_id = "paging-patient"
    start = date(2026, 1, 1)
    resources = [{"resourceType": "Patient", "id": patient_id, "birthDate": "1960-05-05", "gender": "male"}]
    resources += [_weight(patient_id, n, start + timedelta(days=(n * 17) % 45)) for n in range(45)]
    resources += [_heart_rate(patient_id, n) for n in range(10)]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }
    with fhir_server.loaded(bundle):
        yield patient_id


def _dates(value: dict[str, Any]) -> list[str]:
    return [entry["resource"]["effectiveDateTime"] for entry in value["entry"]]


def test_service_queries_follow_pages_sort_by_date_and_search_by_token(
    many_weights: str, fhir_server: FhirServer, make_service: Callable[..., Flask]
) -> None:
    app = make_service()
    body = amifampridine_call(many_weights, fhir_server.base_url)
    data = fetch_as_service(app, body)
    assert sorted(data.fetched) == sorted(templates_of(app, "order-sign"))
    assert not data.unavailable
    weights = data.values["weight"]
    # The server pages by 20: all 45 weights means the next links were followed.
    assert len(weights["entry"]) == 45
    # The code= token search left the heart rates out; _sort=-date put the newest first.
    assert {e["resource"]["code"]["coding"][0]["code"] for e in weights["entry"]} == {"29463-7"}
    assert _dates(weights) == sorted(_dates(weights), reverse=True)
    assert data.values["patient"]["id"] == many_weights


def test_first_page_sent_in_prefetch_is_completed_from_the_server(
    many_weights: str, fhir_server: FhirServer, make_service: Callable[..., Flask]
) -> None:
    app = make_service()
    body = amifampridine_call(many_weights, fhir_server.base_url)
    query = templates_of(app, "order-sign")["weight"].replace("{{context.patientId}}", many_weights)
    first_page = fhir_server.get(query + "&_count=10")
    assert len(first_page["entry"]) == 10 and any(link["relation"] == "next" for link in first_page["link"])
    body["prefetch"] = {"weight": first_page}
    data = fetch_as_service(app, body)
    assert "weight" in data.fetched
    assert len(data.values["weight"]["entry"]) == 45
