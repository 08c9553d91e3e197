"""The override report as a pharmacist reads it (issue 17, item 6), through HTTP: a card counts once per
order, accepted-then-dismissed counts as accepted, a bare reason code is named from cards/, and cards not
repeated at order-sign are counted apart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.storage_requests import SEIZURE_TOPIC, accepted, order_sign_with_seizure_history

from cds_service.app import create_app
from cds_service.config import Settings

pytest_plugins = ["conftest_postgres"]

SELECT_URL = "/cds-services/amifampridine-order-select"
SIGN_URL = "/cds-services/amifampridine-order-sign"
OVERRIDE_SYSTEM = "https://amifampridine-cds.github.io/fhir/CodeSystem/override-reason"


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[FlaskClient]:
    env = {
        "CDS_DATA_DIR": str(tmp_path / "data"),
        "CDS_DATABASE_URL": database_url,
        "CDS_AUTH": "off",
        "CDS_ADMIN_ENABLED": "true",
    }
    app: Flask = create_app(Settings.from_env(env))
    yield app.test_client()
    app.extensions["cds.audit"].close(timeout=5)


def call(client: FlaskClient, hook: str = "order-select", patient: str = "p-1", order: str = "amf-1") -> str:
    body = order_sign_with_seizure_history(patient, order_id=order)
    if hook == "order-select":
        body["hook"] = "order-select"
        body["context"]["selections"] = [f"MedicationRequest/{order}"]
    response = client.post(SELECT_URL if hook == "order-select" else SIGN_URL, json=body)
    assert response.status_code == 200
    [card] = [c for c in response.get_json()["cards"] if c["source"]["topic"]["code"] == SEIZURE_TOPIC]
    return card["uuid"]


def override(
    card: str, code: str, system: str | None = OVERRIDE_SYSTEM, when: str = "2026-12-01T10:00:00Z"
) -> dict:
    reason: dict[str, Any] = {"code": code}
    if system:
        reason["system"] = system
    return {
        "card": card,
        "outcome": "overridden",
        "outcomeTimestamp": when,
        "overrideReason": {"reason": reason},
    }


def feedback(client: FlaskClient, *entries: dict, hook: str = "order-select") -> None:
    url = f"{SELECT_URL if hook == 'order-select' else SIGN_URL}/feedback"
    assert client.post(url, json={"feedback": list(entries)}).status_code == 200


def seizure_row(client: FlaskClient) -> dict[str, Any]:
    report = client.get("/admin/report").get_json()
    [row] = [row for row in report["rows"] if row["topic"] == SEIZURE_TOPIC]
    return row


def test_order_select_re_runs_of_one_order_are_one_card_shown(client: FlaskClient) -> None:
    for _ in range(3):
        call(client)
    call(client, order="amf-2")  # another order of the same patient
    call(client, patient="p-2")  # the same draft id for another patient (the sandbox's request-123)
    assert seizure_row(client)["cardsShown"] == 3


def test_accepted_then_dismissed_counts_as_accepted(client: FlaskClient) -> None:
    card = call(client)
    feedback(client, accepted(card, when="2026-12-01T10:00:00Z"))
    feedback(client, override(card, "not-epilepsy", when="2026-12-01T10:05:00Z"))
    row = seizure_row(client)
    assert (row["feedbackReceived"], row["accepted"], row["overridden"]) == (1, 1, 0)


def test_feedback_on_two_re_runs_of_one_order_is_one_card_answered(client: FlaskClient) -> None:
    feedback(client, override(call(client), "not-epilepsy"))
    feedback(client, override(call(client), "not-epilepsy"))
    row = seizure_row(client)
    assert (row["cardsShown"], row["feedbackReceived"], row["overridden"], row["overrideRate"]) == (
        1,
        1,
        1,
        1.0,
    )


def test_a_bare_reason_code_is_named_from_cards(client: FlaskClient) -> None:
    feedback(client, override(call(client, order="a"), "not-epilepsy"))
    feedback(client, override(call(client, order="b"), "record-incorrect", system=None))
    feedback(client, override(call(client, order="c"), "not-epilepsy", system="urn:oid:1.2.3.ehr-own-codes"))
    reasons = {(r["code"], r["display"]): r["count"] for r in seizure_row(client)["topOverrideReasons"]}
    assert reasons == {
        ("not-epilepsy", "Recorded seizure is not epilepsy (provoked or single event)"): 1,
        ("record-incorrect", "Seizure history recorded in error"): 1,
        ("not-epilepsy", "not-epilepsy"): 1,  # another code system's code is not ours to name
    }


def test_a_card_not_repeated_at_order_sign_is_counted_apart(client: FlaskClient) -> None:
    feedback(client, override(call(client), "not-epilepsy"))
    sign = order_sign_with_seizure_history("p-1", order_id="amf-1")
    response = client.post(SIGN_URL, json=sign)
    assert SEIZURE_TOPIC not in [c["source"]["topic"]["code"] for c in response.get_json()["cards"]]
    row = seizure_row(client)
    assert (row["cardsShown"], row["suppressedAtSign"]) == (1, 1)
