"""Medications by reference against the real FHIR server (sekmet-fhir): an active MedicationRequest whose
``medicationReference`` names a pyridostigmine Medication stored on the server, coded by RxNorm only, is
identified by the service's ``Medication?_id=`` query and meets the amifampridine draft."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sekmet_server import FhirServer

from cds_service.integration.simulator import build_request

pytestmark = pytest.mark.integration

PATIENT = "medref-patient"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    kind, ident = resource["resourceType"], resource["id"]
    return {"resource": resource, "request": {"method": "PUT", "url": f"{kind}/{ident}"}}


def _active_by_reference(ident: str, medication: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": ident,
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "authoredOn": "2026-01-05",
        "medicationReference": {"reference": f"Medication/{medication}"},
    }


def test_a_referenced_medication_on_the_server_is_fetched_and_classified(
    fhir_server: FhirServer, make_service: Callable[..., Flask]
) -> None:
    resources = [
        {"resourceType": "Patient", "id": PATIENT, "birthDate": "1970-01-01", "gender": "male"},
        {
            "resourceType": "Medication",
            "id": "medref-pyr",
            "code": {"coding": [{"system": RXNORM, "code": "903857"}]},
        },
        {
            "resourceType": "Medication",
            "id": "medref-apap",
            "code": {"coding": [{"system": RXNORM, "code": "313782"}]},
        },
        _active_by_reference("medref-mr-1", "medref-pyr"),
        _active_by_reference("medref-mr-2", "medref-apap"),
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [_put(r) for r in resources]}
    draft = {
        "resourceType": "MedicationRequest",
        "id": "medref-draft",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "medicationCodeableConcept": {"text": "amifampridine 10 MG Oral Tablet"},
    }
    body = build_request(
        "order-sign", PATIENT, "Practitioner/p1", [draft], prefetch=None, fhir_server=fhir_server.base_url
    )
    with fhir_server.loaded(bundle):
        response = make_service().test_client().post("/cds-services/amifampridine-order-sign", json=body)
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    cholinergic = [c for c in cards if c["source"]["topic"]["code"] == "cholinergic-drug"]
    assert len(cholinergic) == 1
    assert "data-unavailable" not in {c["source"]["topic"]["code"] for c in cards}
