"""CORS for browser clients, and the feedback endpoint's validation."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from helpers.builders import ORDER_SIGN

SANDBOX = "https://sandbox.cds-hooks.org"


def test_no_cors_headers_by_default(client: FlaskClient) -> None:
    response = client.get("/cds-services", headers={"Origin": SANDBOX})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_preflight_and_response_headers_for_an_allowed_origin(make_app: Any) -> None:
    client = make_app(CDS_CORS_ORIGINS=f"{SANDBOX}, https://ehr.example.org").test_client()
    preflight = client.options(
        ORDER_SIGN,
        headers={
            "Origin": SANDBOX,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == SANDBOX
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    response = client.get("/cds-services", headers={"Origin": SANDBOX})
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX
    assert "Origin" in response.headers["Vary"]
    # A browser client (the sandbox) may read which knowledge version answered.
    assert "X-Knowledge-Version" in response.headers["Access-Control-Expose-Headers"]
    other = client.get("/cds-services", headers={"Origin": "https://evil.example.net"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_wildcard_origin_for_local_use(make_app: Any) -> None:
    client = make_app(CDS_CORS_ORIGINS="*").test_client()
    response = client.get("/cds-services", headers={"Origin": "http://localhost:3000"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


FEEDBACK = f"{ORDER_SIGN}/feedback"


def _entry(**extra: Any) -> dict[str, Any]:
    entry = {
        "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
        "outcome": "overridden",
        "overrideReason": {
            "reason": {
                "code": "benefit-outweighs-risk",
                "system": "https://example.org",
                "display": "Benefit",
            },
            "userComment": "discussed with patient",
        },
        "outcomeTimestamp": "2026-11-22T13:20:50.52Z",
    }
    entry.update(extra)
    return entry


def test_valid_feedback_is_accepted(client: FlaskClient) -> None:
    accepted = _entry(
        outcome="accepted", acceptedSuggestions=[{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}]
    )
    del accepted["overrideReason"]
    response = client.post(FEEDBACK, json={"feedback": [_entry(), accepted]})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "feedback"),
        ({"feedback": []}, "feedback"),
        ({"feedback": [_entry(card=None)]}, "feedback[0].card"),
        ({"feedback": [_entry(outcome="ignored")]}, "feedback[0].outcome"),
        ({"feedback": [_entry(outcomeTimestamp="yesterday")]}, "feedback[0].outcomeTimestamp"),
        ({"feedback": [_entry(outcome="accepted")]}, "feedback[0].acceptedSuggestions"),
        (
            {"feedback": [_entry(outcome="accepted", acceptedSuggestions=[{}])]},
            "feedback[0].acceptedSuggestions[0].id",
        ),
        (
            {"feedback": [_entry(overrideReason={"reason": {"display": "x"}})]},
            "feedback[0].overrideReason.reason",
        ),
        ({"feedback": [_entry(overrideReason={"userComment": 5})]}, "feedback[0].overrideReason.userComment"),
    ],
)
def test_malformed_feedback_gets_400_naming_the_field(client: FlaskClient, body: Any, field: str) -> None:
    response = client.post(FEEDBACK, json=body)
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["expression"] == [field]


def test_feedback_for_an_unknown_service_gets_404(client: FlaskClient) -> None:
    assert client.post("/cds-services/nope/feedback", json={"feedback": [_entry()]}).status_code == 404
