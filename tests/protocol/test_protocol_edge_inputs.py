"""Protocol review items 6, 9 and 10 through the HTTP API: fhirServer with a bare "?" or "#", the ids "."
and "..", feedback timestamps that are not real date-times, and update suggestions for drafts without id."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient
from helpers.builders import (
    ORDER_SELECT,
    ORDER_SIGN,
    amifampridine_order,
    empty_prefetch,
    order_sign,
    searchset,
)

FHIR = "https://ehr.example.org/fhir/r4"
AUTH = {"access_token": "SECRET-TOKEN", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read"}
FEEDBACK = f"{ORDER_SIGN}/feedback"


def _expression(response: Any) -> list[str]:
    return response.get_json()["issue"][0]["expression"]


def _fetching(fhir_server: str, patient_id: str = "amf-test-patient") -> dict[str, Any]:
    """A call without prefetch, so the service queries ``fhir_server`` with the EHR's token."""
    body = order_sign(amifampridine_order(), fhirServer=fhir_server, fhirAuthorization=AUTH)
    body["context"]["patientId"] = patient_id
    return body


# Item 6: fhirServer


@pytest.fixture
def allowlisted(make_app: Any) -> FlaskClient:
    return make_app(CDS_FHIR_SERVER_ALLOWLIST=FHIR, CDS_ALLOW_HTTP_FHIR="false").test_client()


@pytest.mark.parametrize("suffix", ["?", "#", "/?", "?_format=json", "#x"])
def test_fhir_server_with_a_query_or_fragment_gets_400_and_no_request(
    allowlisted: FlaskClient, suffix: str
) -> None:
    with responses.RequestsMock() as mocked:  # any outbound request fails the test
        response = allowlisted.post(ORDER_SIGN, json=_fetching(FHIR + suffix))
        assert len(mocked.calls) == 0
    assert response.status_code == 400
    assert _expression(response) == ["fhirServer"]
    assert "SECRET-TOKEN" not in response.get_data(as_text=True)


def test_registered_fhir_server_is_still_queried_under_its_base(allowlisted: FlaskClient) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.get(re.compile(r"https://ehr\.example\.org/.*"), json=searchset())
        response = allowlisted.post(ORDER_SIGN, json=_fetching(FHIR + "/"))
        urls = [call.request.url for call in mocked.calls]
    assert response.status_code == 200
    assert urls and all(url.startswith(FHIR + "/") for url in urls)


# Item 6: the ids "." and ".."


@pytest.mark.parametrize("patient_id", [".", ".."])
def test_dot_patient_id_gets_400_before_any_request(allowlisted: FlaskClient, patient_id: str) -> None:
    with responses.RequestsMock() as mocked:
        response = allowlisted.post(ORDER_SIGN, json=_fetching(FHIR, patient_id=patient_id))
        assert len(mocked.calls) == 0
    assert response.status_code == 400
    assert _expression(response) == ["context.patientId"]


def _with(body: dict[str, Any], **context: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["context"].update(context)
    return body


@pytest.mark.parametrize("dots", [".", ".."])
def test_dot_ids_get_400_naming_the_field(client: FlaskClient, dots: str) -> None:
    valid = order_sign(amifampridine_order(), prefetch=empty_prefetch())
    cases = [
        (_with(valid, patientId=dots), "context.patientId"),
        (_with(valid, encounterId=dots), "context.encounterId"),
        (_with(valid, userId=f"Practitioner/{dots}"), "context.userId"),
        (
            order_sign(amifampridine_order(order_id=dots), prefetch=empty_prefetch()),
            "context.draftOrders.entry[0].resource.id",
        ),
    ]
    for body, field in cases:
        response = client.post(ORDER_SIGN, json=body)
        assert response.status_code == 400, field
        assert _expression(response) == [field]
    select = _with(valid, selections=[f"MedicationRequest/{dots}"])
    select["hook"] = "order-select"
    response = client.post(ORDER_SELECT, json=select)
    assert response.status_code == 400
    assert _expression(response) == ["context.selections[0]"]


@pytest.mark.parametrize("ok", ["...", "a.b", ".a", "x-1"])
def test_ids_with_dots_that_are_not_path_steps_are_accepted(client: FlaskClient, ok: str) -> None:
    body = order_sign(amifampridine_order(), prefetch=empty_prefetch())
    body["context"]["encounterId"] = ok
    assert client.post(ORDER_SIGN, json=body).status_code == 200


# Item 9: feedback outcomeTimestamp


def _feedback(timestamp: str) -> dict[str, Any]:
    return {
        "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
        "outcome": "overridden",
        "outcomeTimestamp": timestamp,
    }


@pytest.mark.parametrize(
    "timestamp",
    [
        "2025-13-45T99:99Z",  # month 13, day 45, hour 99
        "2025-02-30T10:00:00Z",  # no 30 February
        "2026-11-22T24:00:00Z",
        "2026-11-22T13:60:00Z",
        "2026-11-22T13:20:61Z",
        "2026-11-22T13:20:50+24:00",
    ],
)
def test_feedback_timestamp_that_is_no_date_time_gets_400(client: FlaskClient, timestamp: str) -> None:
    body = {"feedback": [_feedback("2026-11-22T13:20:50Z"), _feedback(timestamp)]}
    response = client.post(FEEDBACK, json=body)
    assert response.status_code == 400
    assert _expression(response) == ["feedback[1].outcomeTimestamp"]


@pytest.mark.parametrize(
    "timestamp",
    ["2026-11-22T13:20:50.52Z", "2026-11-22T13:20Z", "2026-11-22T13:20:50+05:30", "2016-12-31T23:59:60Z"],
)
def test_feedback_timestamp_that_is_a_date_time_is_accepted(client: FlaskClient, timestamp: str) -> None:
    response = client.post(FEEDBACK, json={"feedback": [_feedback(timestamp)]})
    assert response.status_code == 200


# Item 10: update suggestions for a draft without id


def _over_cap_cards(client: FlaskClient, order: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """40 mg twice a day: a single dose above the 20 mg cap, fixed by an update of the draft."""
    response = client.post(ORDER_SIGN, json=order_sign(order, prefetch=empty_prefetch()))
    assert response.status_code == 200
    return {card["source"]["topic"]["code"]: card for card in response.get_json()["cards"]}


def _actions(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [action for s in card.get("suggestions", []) for action in s.get("actions", [])]


def test_draft_without_id_gets_no_update_and_no_invented_id(client: FlaskClient) -> None:
    order = amifampridine_order(mg=40, per_day=2)
    del order["id"]
    cards = _over_cap_cards(client, order)
    assert "dose-single-max" in cards
    assert "amifampridine-draft" not in str(cards)
    for card in cards.values():
        assert card["summary"] and card["detail"]  # the card keeps its text
        assert [a for a in _actions(card) if a["type"] == "update"] == []


def test_draft_without_id_gets_no_empty_suggestion(client: FlaskClient) -> None:
    order = amifampridine_order(mg=40, per_day=2)
    del order["id"]
    for card in _over_cap_cards(client, order).values():
        assert all(s.get("actions") for s in card.get("suggestions", []))


def test_draft_with_id_still_gets_its_update(client: FlaskClient) -> None:
    cards = _over_cap_cards(client, amifampridine_order(order_id="draft-40", mg=40, per_day=2))
    updates = [a for a in _actions(cards["dose-single-max"]) if a["type"] == "update"]
    assert updates and all(a["resource"]["id"] == "draft-40" for a in updates)
