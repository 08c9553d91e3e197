"""Never quiet when nothing was checked (issue 17, item 1): with no patient data at all the answer is 200
with a card naming the checks not done, not a 412 that EHRs show as "All clear"."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from helpers.builders import ORDER_SIGN, amifampridine_order, order_sign, topics

FHIR = "https://ehr.example.org/fhir"
TOKEN = "secret-ehr-access-token"
AUTH = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read"}


def _server_down(client: FlaskClient, body: dict[str, Any]) -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get(re.compile(rf"{re.escape(FHIR)}/.*"), body=requests.ConnectionError("refused"))
        return client.post(ORDER_SIGN, json={**body, "fhirServer": FHIR, "fhirAuthorization": AUTH})


def _unavailable(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    cards = [c for c in response.get_json()["cards"] if c["source"]["topic"]["code"] == "data-unavailable"]
    assert len(cards) == 1
    return cards[0]


def test_fhir_server_down_and_no_prefetch_gives_a_critical_card_leading_with_contraindications(
    client: FlaskClient,
) -> None:
    card = _unavailable(_server_down(client, order_sign(amifampridine_order())))
    assert card["indicator"] == "critical"
    assert card["summary"].startswith(
        "Amifampridine safety not checked: history of seizures, aminopyridine allergy and "
    )
    assert card["summary"].endswith("(the record could not be read)")
    for check in ("history of seizures", "aminopyridine allergy", "renal impairment", "cholinergic"):
        assert check in card["detail"]
    text = card["summary"] + card["detail"]
    # No exception names, no Python type names, no token.
    for word in ("ConnectionError", "Error", "Exception", "NoneType", "<class", "dict", TOKEN):
        assert word not in text


def test_no_fhir_server_and_no_prefetch_gives_the_card_too(client: FlaskClient) -> None:
    response = client.post(ORDER_SIGN, json=order_sign(amifampridine_order()))
    card = _unavailable(response)
    assert card["indicator"] == "critical"
    assert "fhirServer" not in card["summary"] + card["detail"]


def test_what_the_order_alone_tells_is_still_checked(client: FlaskClient) -> None:
    # 40 mg in one dose is over the single-dose cap whatever the record says.
    response = client.post(ORDER_SIGN, json=order_sign(amifampridine_order(mg=40, per_day=2)))
    assert topics(response.get_json()) == ["data-unavailable", "dose-single-max"]


def test_an_unrelated_order_without_data_stays_quiet(client: FlaskClient) -> None:
    from helpers.builders import ibuprofen_order

    response = client.post(ORDER_SIGN, json=order_sign(ibuprofen_order()))
    assert response.status_code == 200
    assert response.get_json()["cards"] == []


def test_cds_no_data_status_412_restores_the_spec_answer(make_app: Callable[..., Flask]) -> None:
    client = make_app(CDS_NO_DATA_STATUS="412").test_client()
    response = client.post(ORDER_SIGN, json=order_sign(amifampridine_order()))
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "prefetch.conditions" in outcome["issue"][0]["expression"]


def test_an_interacting_drug_without_data_says_the_interaction_was_not_checked(client: FlaskClient) -> None:
    # Sertraline drafted; the record (is the patient on amifampridine?) could not be read.
    fixture = Path(__file__).resolve().parents[2] / "fixtures/requests/reverse-sertraline-draft.json"
    body = json.loads(fixture.read_text(encoding="utf-8"))
    for key in ("prefetch", "fhirServer", "fhirAuthorization"):
        body.pop(key, None)
    card = _unavailable(client.post(ORDER_SIGN, json=body))
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Interactions with amifampridine not checked for ")
    assert "history of seizures" not in card["summary"] + card["detail"]
