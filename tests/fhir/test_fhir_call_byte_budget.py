"""The bytes read from FHIR servers are bounded per hook call, not per page (CDS_FHIR_MAX_CALL_BYTES).

A stand-in FHIR server on 127.0.0.1 answers the conditions query with endless pages of ~256 KB linked
by ``next``; every other key is small. Past the call's budget the conditions key is a check not run
(a data-unavailable card naming the setting), never a 500, and the server is asked for no more pages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from helpers.stuck_servers import HealthyFhir

from cds_service.fhir_client import ClientSettings, FhirClient
from cds_service.integration.simulator import build_request

PATIENT = "p-big"
PAGE_ENTRIES = 1000  # ~256 KB of JSON per page
BUDGET = 1024 * 1024


class PagingAttack:
    def __init__(self) -> None:
        self.pages_served = 0
        self.others_served = 0
        self.others_done = threading.Event()
        self.base_url = ""

    def answer(self, path: str) -> dict[str, Any]:
        parts = urlsplit(path)
        if parts.path == "/fhir/Condition":
            # Let the other six keys finish first, so that the test knows which key the budget stops.
            self.others_done.wait(timeout=30)
            page = int(parse_qs(parts.query).get("page", ["0"])[0])
            self.pages_served += 1
            condition = {"resourceType": "Condition", "code": {"text": "x" * 200}}
            return {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": {**condition, "id": f"c{page}-{i}"}} for i in range(PAGE_ENTRIES)],
                "link": [{"relation": "next", "url": f"{self.base_url}/Condition?page={page + 1}"}],
            }
        self.others_served += 1
        if self.others_served == 6:
            self.others_done.set()
        if parts.path == f"/fhir/Patient/{PATIENT}":
            return {"resourceType": "Patient", "id": PATIENT, "birthDate": "1970-01-01"}
        return {"resourceType": "Bundle", "type": "searchset", "entry": []}


def test_pages_past_the_call_budget_become_a_data_unavailable_card(make_app: Callable[..., Flask]) -> None:
    attack = PagingAttack()
    with HealthyFhir(attack.answer) as server:
        attack.base_url = server.base_url
        app = make_app(CDS_FHIR_MAX_CALL_BYTES=str(BUDGET), CDS_FHIR_MAX_PAGES="100")
        draft = {
            "resourceType": "MedicationRequest",
            "id": "amif",
            "status": "draft",
            "intent": "order",
            "subject": {"reference": f"Patient/{PATIENT}"},
            "medicationCodeableConcept": {"text": "amifampridine 10 MG Oral Tablet"},
        }
        body = build_request(
            "order-sign", PATIENT, "Practitioner/p1", [draft], prefetch=None, fhir_server=server.base_url
        )
        response = app.test_client().post("/cds-services/amifampridine-order-sign", json=body)
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    unavailable = [c for c in cards if c["source"]["topic"]["code"] == "data-unavailable"]
    assert len(unavailable) == 1
    assert "CDS_FHIR_MAX_CALL_BYTES" in unavailable[0]["detail"]
    assert "history of seizures" in unavailable[0]["detail"]  # the conditions checks did not run
    page_bytes = 256 * 1024
    assert attack.pages_served <= BUDGET // page_bytes + 2  # it stopped asking, not read all 100 pages


def test_the_budget_is_shared_by_the_queries_of_one_call_only() -> None:
    attack = PagingAttack()
    attack.others_done.set()
    with HealthyFhir(attack.answer) as server:
        attack.base_url = server.base_url
        client = FhirClient(ClientSettings(max_call_bytes=BUDGET, max_pages=100))
        first = client.fetch_all(server.base_url, {"conditions": "Condition?patient=p"}, None)
        second = client.fetch_all(server.base_url, {"patient": f"Patient/{PATIENT}"}, None)
    assert "CDS_FHIR_MAX_CALL_BYTES" in (first["conditions"].error or "")
    assert second["patient"].error is None  # a new call starts with a fresh budget
