"""CDS Hooks 2.0.1 request handling: discovery, official and recorded requests, and every bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from helpers.builders import (
    ORDER_SELECT,
    ORDER_SIGN,
    PRESCRIBE,
    amifampridine_order,
    assert_no_empty_fields,
    empty_prefetch,
    epilepsy,
    ibuprofen_order,
    order_sign,
    searchset,
    topics,
)

SERVICE_FOR_HOOK = {"order-select": ORDER_SELECT, "order-sign": ORDER_SIGN, "medication-prescribe": PRESCRIBE}
TOKEN = re.compile(r"\{\{([^}]*)\}\}")
VALID_2_0_TOKENS = {"userPractitionerId", "userPractitionerRoleId", "userPatientId", "userRelatedPersonId"}


def test_discovery_lists_one_service_per_hook_with_2_0_prefetch_tokens(client: FlaskClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = response.get_json()["services"]
    assert sorted(s["hook"] for s in services) == ["medication-prescribe", "order-select", "order-sign"]
    for service in services:
        assert {"id", "hook", "title", "description", "prefetch"} <= set(service)
        assert set(service["prefetch"]) == {
            "patient",
            "medications",
            "conditions",
            "allergies",
            "weight",
            "renal",
            "nat2",
        }
        for template in service["prefetch"].values():
            for token in TOKEN.findall(template):
                # 2.0: only root-level context fields and the four user tokens
                assert token in VALID_2_0_TOKENS or re.fullmatch(r"context\.[A-Za-z]+", token), token
        observation_queries = [service["prefetch"][k] for k in ("weight", "renal", "nat2")]
        assert "http://loinc.org|29463-7" in observation_queries[0]
        assert "http://loinc.org|2164-2" in observation_queries[1]
        assert "http://loinc.org|53040-2" in observation_queries[2]
    assert_no_empty_fields(response.get_json())


def _official_example(shared_dir: Path, name: str, hook: str) -> dict[str, Any]:
    example = json.loads((shared_dir / "cds-hooks/hl7-cds-hooks-library-1.0.1-examples" / name).read_text())
    # The library examples carry only the context; an EHR adds hook and hookInstance.
    return {"hook": hook, "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", **example}


@pytest.mark.parametrize(
    ("name", "hook"),
    [
        ("order-select-01-example-r4.json", "order-select"),
        ("order-sign-01-example-r4.json", "order-sign"),
        ("order-select-02-example-stu3.json", "order-select"),
        ("order-sign-02-example-stu3.json", "order-sign"),
        ("medication-prescribe-01-example-stu3.json", "medication-prescribe"),
        ("medication-prescribe-02-example-dstu2.json", "medication-prescribe"),
    ],
)
def test_official_hook_examples_are_accepted_without_cards(
    client: FlaskClient, shared_dir: Path, name: str, hook: str
) -> None:
    response = client.post(SERVICE_FOR_HOOK[hook], json=_official_example(shared_dir, name, hook))
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"cards": []}


@pytest.mark.parametrize("name", ["order-select-ibuprofen-800.json", "order-select-no-drug-selected.json"])
def test_recorded_sandbox_requests_are_accepted_without_cards(
    client: FlaskClient, shared_dir: Path, name: str
) -> None:
    body = json.loads((shared_dir / "test-data/sandbox-requests" / name).read_text())
    response = client.post(ORDER_SELECT, json=body)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"cards": []}


def test_recorded_patient_view_request_is_refused_for_an_order_service(
    client: FlaskClient, shared_dir: Path
) -> None:
    body = json.loads((shared_dir / "test-data/sandbox-requests/patient-view.json").read_text())
    response = client.post(ORDER_SIGN, json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["hook"]


def test_seizure_history_card_is_complete_and_has_no_empty_fields(client: FlaskClient) -> None:
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(epilepsy())
    response = client.post(ORDER_SIGN, json=order_sign(amifampridine_order(), prefetch=prefetch))
    assert response.status_code == 200
    body = response.get_json()
    assert topics(body) == ["seizure-history"]
    card = body["cards"][0]
    assert card["indicator"] == "critical"
    assert len(card["summary"]) < 140
    assert re.fullmatch(r"[0-9a-f-]{36}", card["uuid"])
    assert card["source"]["url"].startswith("https://dailymed.nlm.nih.gov/")
    assert "§4" in card["source"]["label"]
    assert all(reason["display"] for reason in card["overrideReasons"])
    assert_no_empty_fields(body)


def test_order_select_raises_cards_only_for_selected_orders(client: FlaskClient) -> None:
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(epilepsy())
    body = order_sign(amifampridine_order(), prefetch=prefetch)
    body["hook"] = "order-select"
    body["context"]["draftOrders"]["entry"].append(
        {"resource": {**amifampridine_order("other"), "medicationCodeableConcept": {"text": "ibuprofen"}}}
    )
    body["context"]["selections"] = ["MedicationRequest/other"]
    response = client.post(ORDER_SELECT, json=body)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}
    body["context"]["selections"] = ["MedicationRequest/draft-amf"]
    assert topics(client.post(ORDER_SELECT, json=body).get_json()) == ["seizure-history"]


def _outcome(response: Any) -> dict[str, Any]:
    body = response.get_json()
    assert body is not None, "error bodies are JSON"
    assert body["resourceType"] == "OperationOutcome"
    assert "Traceback" not in json.dumps(body)
    return body["issue"][0]


def _valid() -> dict[str, Any]:
    return order_sign(amifampridine_order(), prefetch=empty_prefetch())


def _without(path: str) -> dict[str, Any]:
    body = _valid()
    *parents, last = path.split(".")
    target = body
    for part in parents:
        target = target[part]
    del target[last]
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_without("hook"), "hook"),
        (_without("hookInstance"), "hookInstance"),
        (_without("context"), "context"),
        (_without("context.userId"), "context.userId"),
        (_without("context.patientId"), "context.patientId"),
        (_without("context.draftOrders"), "context.draftOrders"),
        ({**_valid(), "hook": "order-select"}, "hook"),
        ({**_valid(), "hookInstance": ""}, "hookInstance"),
        ({**_valid(), "hookInstance": 42}, "hookInstance"),
        ({**_valid(), "context": {**_valid()["context"], "userId": "doctor"}}, "context.userId"),
        ({**_valid(), "context": {**_valid()["context"], "patientId": "a b/c"}}, "context.patientId"),
        (
            {**_valid(), "context": {**_valid()["context"], "draftOrders": {"entry": []}}},
            "context.draftOrders.resourceType",
        ),
        (
            {
                **_valid(),
                "context": {**_valid()["context"], "draftOrders": {"resourceType": "Bundle", "entry": [{}]}},
            },
            "context.draftOrders.entry[0].resource",
        ),
        (
            {
                **_valid(),
                "context": {
                    **_valid()["context"],
                    "draftOrders": {
                        "resourceType": "Bundle",
                        "entry": [{"resource": {"resourceType": "Patient"}}],
                    },
                },
            },
            "context.draftOrders.entry[0].resource.resourceType",
        ),
        ({**_valid(), "fhirAuthorization": {"access_token": "x", "token_type": "Bearer"}}, "fhirServer"),
        ({**_valid(), "fhirServer": "ftp://ehr.example.org/fhir"}, "fhirServer"),
        (
            {
                **_valid(),
                "fhirServer": "https://ehr.example.org/fhir",
                "fhirAuthorization": {"token_type": "Bearer"},
            },
            "fhirAuthorization.access_token",
        ),
        ({**_valid(), "prefetch": ["not", "an", "object"]}, "prefetch"),
        ({**_valid(), "prefetch": {"conditions": "text"}}, "prefetch.conditions"),
    ],
)
def test_each_bad_field_gets_400_naming_it(client: FlaskClient, body: dict[str, Any], field: str) -> None:
    response = client.post(ORDER_SIGN, json=body)
    assert response.status_code == 400
    assert _outcome(response)["expression"] == [field]


def test_order_select_requires_selections_that_name_draft_orders(client: FlaskClient) -> None:
    body = _valid()
    body["hook"] = "order-select"
    response = client.post(ORDER_SELECT, json=body)
    assert response.status_code == 400
    assert _outcome(response)["expression"] == ["context.selections"]
    body["context"]["selections"] = ["MedicationRequest/missing"]
    response = client.post(ORDER_SELECT, json=body)
    assert response.status_code == 400
    assert _outcome(response)["expression"] == ["context.selections[0]"]


def test_medication_prescribe_reads_context_medications(client: FlaskClient) -> None:
    prefetch = empty_prefetch()
    prefetch["conditions"] = searchset(epilepsy())
    body = order_sign(amifampridine_order(), prefetch=prefetch)
    body["hook"] = "medication-prescribe"
    body["context"]["medications"] = body["context"].pop("draftOrders")
    assert topics(client.post(PRESCRIBE, json=body).get_json()) == ["seizure-history"]


def test_non_json_body_gets_415(client: FlaskClient) -> None:
    response = client.post(
        ORDER_SIGN, data="hook=order-sign", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415
    _outcome(response)


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"[1, 2]",
        b'"text"',
        b"null",
        b'{"hook": "order-sign", "hookInstance": "\xb5"}',  # not UTF-8
        b'{"hook": "order-sign", "hookInstance": "\\ud800"}',  # a lone surrogate
        b'{"hook": "order-sign", "context": {"n": 1e999}}',  # no float can hold it
    ],
)
def test_malformed_json_gets_400(client: FlaskClient, raw: bytes) -> None:
    response = client.post(ORDER_SIGN, data=raw, content_type="application/json")
    assert response.status_code == 400
    _outcome(response)


def test_body_over_the_size_limit_gets_413(make_app: Any) -> None:
    client = make_app(CDS_MAX_BODY_BYTES="2048").test_client()
    body = _valid()
    body["context"]["padding"] = "x" * 4096
    response = client.post(ORDER_SIGN, json=body)
    assert response.status_code == 413
    _outcome(response)


def test_deeply_nested_json_gets_400(client: FlaskClient) -> None:
    body = _valid()
    nested: dict[str, Any] = {}
    cursor = nested
    for _ in range(200):
        cursor["a"] = {}
        cursor = cursor["a"]
    body["context"]["extension"] = nested
    response = client.post(ORDER_SIGN, json=body)
    assert response.status_code == 400
    assert "nested" in _outcome(response)["diagnostics"]


def test_unknown_service_gets_404_and_wrong_method_405(client: FlaskClient) -> None:
    response = client.post("/cds-services/no-such-service", json=_valid())
    assert response.status_code == 404
    _outcome(response)
    response = client.get(ORDER_SIGN)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    _outcome(response)
    response = client.delete("/cds-services")
    assert response.status_code == 405
    _outcome(response)
    assert client.get("/no/such/path").status_code == 404


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["status"] == "ready"
    assert ready["topics"] >= 2
    assert re.fullmatch(r"[0-9a-f]{12}", ready["knowledgeVersion"])


def test_deep_nesting_inside_prefetch_records_is_left_to_the_parser(client: FlaskClient) -> None:
    # Prefetch records are read only at fixed paths, so the depth limit does not walk them (that walk
    # cost more than decoding a long record); orjson's own 1024-level limit still applies.
    body = _valid()
    nested: dict[str, Any] = {}
    cursor = nested
    for _ in range(200):
        cursor["a"] = {}
        cursor = cursor["a"]
    body["prefetch"]["patient"]["extension"] = [
        {"url": "https://example.org/deep", "valueString": "x", "a": nested}
    ]
    assert client.post(ORDER_SIGN, json=body).status_code == 200
    raw = b'{"hook": "order-sign", "prefetch": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    response = client.post(ORDER_SIGN, data=raw, content_type="application/json")
    assert response.status_code == 400


def _with_bad_number_in_conditions(body: dict[str, Any]) -> bytes:
    # 1e999 is valid JSON syntax that no decoder can turn into a float: the conditions record is only
    # found to be unreadable when something decodes it.
    raw = json.dumps(body).encode()
    marker = b'"conditions": {"resourceType": "Bundle"'
    assert marker in raw
    return raw.replace(marker, b'"conditions": {"resourceType": "Bundle", "x": 1e999', 1)


def test_prefetch_is_decoded_only_when_the_order_concerns_amifampridine(client: FlaskClient) -> None:
    unrelated = order_sign(ibuprofen_order(), prefetch=empty_prefetch())
    response = client.post(
        ORDER_SIGN, data=_with_bad_number_in_conditions(unrelated), content_type="application/json"
    )
    # Not amifampridine: the patient data is never read, so its unreadable number goes unnoticed.
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}

    response = client.post(
        ORDER_SIGN, data=_with_bad_number_in_conditions(_valid()), content_type="application/json"
    )
    assert response.status_code == 400
    outcome = _outcome(response)
    assert outcome["expression"] == ["prefetch.conditions"]


@pytest.mark.parametrize(
    ("raw", "expression"),
    [
        (b'{"hook": "order-sign", "prefetch": [1]}', ["prefetch"]),
        (b'{"hook": "order-sign", "prefetch": "patient"}', ["prefetch"]),
        (b'{"hook": "order-sign", "prefetch": {"patient": {"resourceType": "Patient",}}}', None),
        (b'{"hook": "order-sign", "prefetch": {"patient": [1e999]}}', ["prefetch.patient"]),
    ],
)
def test_prefetch_that_is_not_an_object_or_not_json_gets_400(
    client: FlaskClient, raw: bytes, expression: list[str] | None
) -> None:
    response = client.post(ORDER_SIGN, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert _outcome(response).get("expression") == expression


def test_unread_top_level_members_and_null_prefetch_values_keep_their_meaning(client: FlaskClient) -> None:
    body = _valid()
    body["extension"] = {"com.example.ehr": {"deep": [1, 2, 3]}}
    body["prefetch"]["allergies"] = [1]  # not a resource: refused, naming the key
    response = client.post(ORDER_SIGN, json=body)
    assert response.status_code == 400
    assert _outcome(response)["expression"] == ["prefetch.allergies"]
    body["prefetch"]["allergies"] = None  # null: the EHR has none; nothing to fetch, nothing missing
    body["prefetch"]["conditions"] = searchset(epilepsy())
    assert topics(client.post(ORDER_SIGN, json=body).get_json()) == ["seizure-history"]
