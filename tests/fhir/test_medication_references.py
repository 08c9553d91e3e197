"""Medications by reference: an order whose drug is a ``medicationReference`` to a Medication on the FHIR
server (not contained, not in the request) is identified by fetching that Medication, in one query for
all of them, with the EHR's token and under the allow-list; without a server the order is named as one
whose drug is unknown (``--explain``, engine notes, and a data-unavailable card for an amifampridine
patient). Real HTTP against a stand-in FHIR server on 127.0.0.1, through the service's HTTP API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from helpers.security import (
    ISS,
    PUBLIC_BASE,
    bearer,
    client_entry,
    jwks_of,
    make_keypair,
    mint_token,
    write_trusted_clients,
)
from helpers.stuck_servers import HealthyFhir

from cds_service.app import create_app
from cds_service.config import DEFAULT_CARDS_DIR, Settings
from cds_service.hooks.services import prefetch_templates
from cds_service.integration.explain import explanation
from cds_service.integration.offline import evaluate_request
from cds_service.integration.simulator import build_request
from cds_service.knowledge.loader import load_knowledge

PATIENT = "p-ref"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
# Coded only, no display or text: the code alone must identify the drug.
PYRIDOSTIGMINE = {
    "resourceType": "Medication",
    "id": "med-pyr",
    "code": {"coding": [{"system": RXNORM, "code": "903857"}]},
}
ACETAMINOPHEN = {
    "resourceType": "Medication",
    "id": "med-apap",
    "code": {"coding": [{"system": RXNORM, "code": "313782"}]},
}
SERVER_MEDICATIONS = {m["id"]: m for m in (PYRIDOSTIGMINE, ACETAMINOPHEN)}


def _order(ident: str, status: str, **drug: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": ident,
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT}"},
        "authoredOn": "2026-01-05",
        **drug,
    }


def by_reference(ident: str, medication: str, status: str = "active") -> dict[str, Any]:
    return _order(ident, status, medicationReference={"reference": f"Medication/{medication}"})


def amifampridine(ident: str = "amif", status: str = "draft") -> dict[str, Any]:
    text = {"text": "amifampridine 10 MG Oral Tablet"}
    return _order(ident, status, medicationCodeableConcept=text)


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


class Ehr:
    """What the stand-in FHIR server holds for the patient."""

    def __init__(self) -> None:
        self.orders: list[dict[str, Any]] = []
        self.medication_status = 200

    def answer(self, path: str) -> dict[str, Any]:
        parts = urlsplit(path)
        if parts.path == f"/fhir/Patient/{PATIENT}":
            return {"resourceType": "Patient", "id": PATIENT, "birthDate": "1970-01-01", "gender": "female"}
        if parts.path == "/fhir/MedicationRequest":
            return bundle(*self.orders)
        if parts.path == "/fhir/Medication":
            ids = parse_qs(parts.query)["_id"][0].split(",")
            return bundle(*(SERVER_MEDICATIONS[i] for i in ids if i in SERVER_MEDICATIONS))
        return bundle()


@pytest.fixture
def ehr() -> Iterator[tuple[Ehr, HealthyFhir]]:
    state = Ehr()
    with HealthyFhir(state.answer) as server:
        yield state, server


def _call(app: Flask, hook: str, drafts: list[dict[str, Any]], **kwargs: Any) -> tuple[int, dict[str, Any]]:
    body = build_request(hook, PATIENT, "Practitioner/p1", drafts, **kwargs)
    service = {"order-sign": "amifampridine-order-sign", "order-select": "amifampridine-order-select"}[hook]
    response = app.test_client().post(f"/cds-services/{service}", json=body)
    return response.status_code, response.get_json()


def _topics(cards: list[dict[str, Any]]) -> list[str]:
    return sorted(card["source"]["topic"]["code"] for card in cards)


def _medication_queries(server: HealthyFhir) -> list[str]:
    return [p for p in server.paths if urlsplit(p).path == "/fhir/Medication"]


def test_current_orders_by_reference_are_fetched_in_one_query_and_classified(
    ehr: tuple[Ehr, HealthyFhir], make_app: Callable[..., Flask]
) -> None:
    state, server = ehr
    state.orders = [by_reference("mr-pyr", "med-pyr"), by_reference("mr-apap", "med-apap")]
    status, body = _call(
        make_app(),
        "order-sign",
        [amifampridine()],
        prefetch=None,
        fhir_server=server.base_url,
        fhir_token="ehr-token",
    )
    assert status == 200, body
    assert "cholinergic-drug" in _topics(body["cards"])
    queries = _medication_queries(server)
    assert len(queries) == 1  # one query for every referenced Medication
    assert sorted(parse_qs(urlsplit(queries[0]).query)["_id"][0].split(",")) == ["med-apap", "med-pyr"]
    assert set(server.authorizations) == {"Bearer ehr-token"}  # the same token as the other queries


def test_a_draft_by_reference_is_fetched_before_it_is_dismissed(
    ehr: tuple[Ehr, HealthyFhir], make_app: Callable[..., Flask]
) -> None:
    state, server = ehr
    state.orders = [amifampridine("amif-active", "active")]
    draft = by_reference("draft-pyr", "med-pyr", status="draft")
    status, body = _call(make_app(), "order-select", [draft], prefetch=None, fhir_server=server.base_url)
    assert status == 200, body
    assert _topics(body["cards"]) == ["cholinergic-drug"]
    assert len(_medication_queries(server)) == 1


def test_a_fetched_unrelated_draft_gives_no_card(
    ehr: tuple[Ehr, HealthyFhir], make_app: Callable[..., Flask]
) -> None:
    state, server = ehr
    state.orders = [amifampridine("amif-active", "active")]
    draft = by_reference("draft-apap", "med-apap", status="draft")
    status, body = _call(make_app(), "order-select", [draft], prefetch=None, fhir_server=server.base_url)
    assert (status, body) == (200, {"cards": []})
    assert len(_medication_queries(server)) == 1


def test_a_medication_in_the_prefetch_bundle_is_not_fetched(
    ehr: tuple[Ehr, HealthyFhir], make_app: Callable[..., Flask]
) -> None:
    _, server = ehr
    prefetch = {
        "patient": {"resourceType": "Patient", "id": PATIENT, "birthDate": "1970-01-01"},
        "medications": bundle(by_reference("mr-pyr", "med-pyr"), PYRIDOSTIGMINE),
        "conditions": bundle(),
        "allergies": bundle(),
        "weight": bundle(),
        "renal": bundle(),
        "nat2": bundle(),
    }
    status, body = _call(
        make_app(), "order-sign", [amifampridine()], prefetch=prefetch, fhir_server=server.base_url
    )
    assert status == 200, body
    assert "cholinergic-drug" in _topics(body["cards"])
    assert server.paths == []


def test_the_allow_list_is_respected_for_the_medication_query(
    ehr: tuple[Ehr, HealthyFhir], tmp_path: Path
) -> None:
    # Auth on, the client registered another FHIR server: the call is refused before any query, the
    # Medication query included (with auth off every loopback server is allowed, so it cannot show this).
    _, server = ehr
    prefetch = {
        "patient": {"resourceType": "Patient", "id": PATIENT, "birthDate": "1970-01-01"},
        "medications": bundle(by_reference("mr-pyr", "med-pyr")),  # complete, but med-pyr is not in it
        "conditions": bundle(),
        "allergies": bundle(),
        "weight": bundle(),
        "renal": bundle(),
        "nat2": bundle(),
    }
    key = make_keypair("ES384")
    clients = write_trusted_clients(
        tmp_path, [client_entry(ISS, jwks=jwks_of(key), fhir_servers=["https://fhir.example.org/r4"])]
    )
    env = {
        "CDS_DATA_DIR": str(tmp_path / "data"),
        "CDS_TRUSTED_CLIENTS": str(clients),
        "CDS_PUBLIC_BASE_URL": PUBLIC_BASE,
        "CDS_ALLOW_HTTP_FHIR": "true",
    }
    app = create_app(Settings.from_env(env))
    body = build_request(
        "order-sign",
        PATIENT,
        "Practitioner/p1",
        [amifampridine()],
        prefetch=prefetch,
        fhir_server=server.base_url,
    )
    endpoint = "/cds-services/amifampridine-order-sign"
    response = app.test_client().post(
        endpoint, json=body, headers=bearer(mint_token(key, aud=PUBLIC_BASE + endpoint))
    )
    assert response.status_code == 403, response.get_json()
    assert server.paths == []


def test_a_failed_medication_query_leaves_the_order_named_in_a_data_unavailable_card(
    make_app: Callable[..., Flask],
) -> None:
    def broken(path: str) -> dict[str, Any]:
        if urlsplit(path).path == "/fhir/Medication":
            return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
        if urlsplit(path).path == "/fhir/MedicationRequest":
            return bundle(by_reference("mr-pyr", "med-pyr"))
        return Ehr().answer(path)

    with HealthyFhir(broken) as server:
        status, body = _call(
            make_app(), "order-sign", [amifampridine()], prefetch=None, fhir_server=server.base_url
        )
    assert status == 200, body
    unavailable = [c for c in body["cards"] if c["source"]["topic"]["code"] == "data-unavailable"]
    assert len(unavailable) == 1
    detail = unavailable[0]["detail"]
    assert "the drug ordered in MedicationRequest/mr-pyr" in detail
    assert "could not be identified" in detail and "OperationOutcome" in detail


# --- without a FHIR server: named in --explain, in the engine notes and, when it matters, in a card -----


def _offline(drafts: list[dict[str, Any]], medications: dict[str, Any]) -> dict[str, Any]:
    prefetch = {
        "patient": {"resourceType": "Patient", "id": PATIENT, "birthDate": "1970-01-01"},
        "medications": medications,
        "conditions": bundle(),
        "allergies": bundle(),
        "weight": bundle(),
        "renal": bundle(),
        "nat2": bundle(),
    }
    knowledge = load_knowledge(DEFAULT_CARDS_DIR)
    body = build_request(
        "order-sign", PATIENT, "Practitioner/p1", drafts, prefetch=prefetch, fhir_server=None
    )
    evaluation = evaluate_request(body, knowledge, prefetch_templates(knowledge), today=date(2026, 3, 1))
    return {
        "cards": evaluation.outcome.cards,
        "explain": explanation(evaluation, knowledge, today=date(2026, 3, 1)),
    }


def test_without_a_server_the_unidentified_current_order_is_named_in_the_card_and_explain() -> None:
    result = _offline([amifampridine()], bundle(by_reference("mr-x", "med-x")))
    unavailable = [c for c in result["cards"] if c["source"]["topic"]["code"] == "data-unavailable"]
    assert len(unavailable) == 1
    # The summary leads with the checks not done; the detail names the order whose drug is unknown.
    assert "the drug ordered in MedicationRequest/mr-x" in unavailable[0]["detail"]
    assert "no fhirServer was given" in unavailable[0]["detail"]
    current = {o["ref"]: o for o in result["explain"]["currentOrders"]}
    assert current["MedicationRequest/mr-x"]["unidentified"] == (
        "Medication/med-x is not in the request and no fhirServer was given"
    )
    rule = next(r for r in result["explain"]["rules"] if r["rule"] == "unidentified-medication")
    assert rule["status"] == "fired: data-unavailable"


def test_without_a_server_an_unidentified_draft_for_an_amifampridine_patient_gets_the_card() -> None:
    draft = by_reference("draft-x", "med-x", status="draft")
    result = _offline([draft], bundle(amifampridine("amif-active", "active")))
    assert _topics(result["cards"]) == ["data-unavailable"]
    assert "MedicationRequest/draft-x" in result["cards"][0]["detail"]
    orders = {o["ref"]: o for o in result["explain"]["orders"]}
    assert "unidentified" in orders["MedicationRequest/draft-x"]
    assert any(
        "MedicationRequest/draft-x: its drug could not be identified" in n
        for n in result["explain"]["otherNotes"]
    )


def test_without_a_server_an_unidentified_draft_without_amifampridine_is_noted_not_carded() -> None:
    draft = by_reference("draft-x", "med-x", status="draft")
    result = _offline([draft], bundle())
    assert result["cards"] == []
    assert any("MedicationRequest/draft-x" in n for n in result["explain"]["otherNotes"])
