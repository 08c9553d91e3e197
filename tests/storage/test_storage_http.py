"""Feedback and the admin report through HTTP, on every database backend."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.storage_requests import (
    SEIZURE_TOPIC,
    SERVICE,
    accepted,
    order_sign_with_seizure_history,
    overridden,
    seizure_card,
)
from sqlalchemy import select

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.storage.models import Feedback

pytest_plugins = ["conftest_postgres"]

FEEDBACK_URL = f"/cds-services/{SERVICE}/feedback"
COMMENT = "spoke with patient Jane at bedside"


def build_app(tmp_path: Path, database_url: str, **env: str) -> Flask:
    settings = Settings.from_env(
        {
            "CDS_DATA_DIR": str(tmp_path / "data"),
            "CDS_DATABASE_URL": database_url,
            "CDS_AUTH": "off",
            "CDS_ADMIN_ENABLED": "true",
            **env,
        }
    )
    return create_app(settings)


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[Flask]:
    app = build_app(tmp_path, database_url)
    yield app
    app.extensions["cds.audit"].close(timeout=5)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def issue_card(client: FlaskClient) -> dict[str, Any]:
    """Make one hook call; its seizure-history card (the response may hold other cards too)."""
    response = client.post(f"/cds-services/{SERVICE}", json=order_sign_with_seizure_history())
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    client.application.config.setdefault("test.cards_issued", 0)
    client.application.config["test.cards_issued"] += len(cards)
    return seizure_card(cards)


def seizure_row(report: dict[str, Any]) -> dict[str, Any]:
    [row] = [r for r in report["rows"] if r["topic"] == SEIZURE_TOPIC]
    return row


def test_feedback_round_trip_and_report(client: FlaskClient) -> None:
    cards = [issue_card(client) for _ in range(4)]
    answer = client.post(
        FEEDBACK_URL,
        json={
            "feedback": [
                accepted(cards[0]["uuid"], suggestions=("use-alternative", "refer-neurology")),
                overridden(cards[1]["uuid"], code="benefit-outweighs-risk", comment=COMMENT),
                overridden(cards[2]["uuid"], code="benefit-outweighs-risk"),
                overridden(cards[3]["uuid"]),  # without a reason
            ]
        },
    )
    assert answer.status_code == 200
    assert answer.get_json() == {"stored": 4, "duplicates": 0, "unknownCards": []}

    response = client.get("/admin/report")
    assert response.status_code == 200
    report = response.get_json()
    row = seizure_row(report)
    indicator = cards[0]["indicator"]
    assert row["indicator"] == indicator
    assert (row["cardsShown"], row["feedbackReceived"], row["accepted"], row["overridden"]) == (4, 4, 1, 3)
    assert row["overrideRate"] == 0.75
    assert [(r["code"], r["count"]) for r in row["topOverrideReasons"]] == [
        ("benefit-outweighs-risk", 2),
        (None, 1),
    ]
    assert report["totals"]["cardsShown"] == client.application.config["test.cards_issued"]
    assert report["unknownCardFeedback"] == 0

    store = client.application.extensions["cds.audit"]
    with store.engine.connect() as conn:
        stored = {r.card_uuid: r for r in conn.execute(select(Feedback))}
    assert stored[cards[0]["uuid"]].accepted_suggestions == '["use-alternative", "refer-neurology"]'
    assert stored[cards[1]["uuid"]].user_comment == COMMENT


def test_same_feedback_twice_is_stored_once(client: FlaskClient) -> None:
    card = issue_card(client)
    body = {"feedback": [overridden(card["uuid"], code="not-epilepsy")]}
    assert client.post(FEEDBACK_URL, json=body).get_json() == {
        "stored": 1,
        "duplicates": 0,
        "unknownCards": [],
    }
    second = client.post(FEEDBACK_URL, json=body)
    assert second.status_code == 200
    assert second.get_json() == {"stored": 0, "duplicates": 1, "unknownCards": []}
    row = seizure_row(client.get("/admin/report").get_json())
    assert (row["feedbackReceived"], row["overridden"]) == (1, 1)


def test_feedback_for_unknown_card_is_accepted_and_flagged(client: FlaskClient) -> None:
    stranger = str(uuid.uuid4())
    response = client.post(FEEDBACK_URL, json={"feedback": [overridden(stranger, code="x")]})
    assert response.status_code == 200
    assert response.get_json() == {"stored": 1, "duplicates": 0, "unknownCards": [stranger]}
    report = client.get("/admin/report").get_json()
    assert report["unknownCardFeedback"] == 1
    assert report["totals"]["feedbackReceived"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"feedback": [{"card": "abc", "outcome": "maybe", "outcomeTimestamp": "2025-03-01T10:00:00Z"}]},
        {"feedback": [{"card": "abc", "outcome": "accepted", "outcomeTimestamp": "2025-03-01T10:00:00Z"}]},
        {"feedback": [{"outcome": "overridden", "outcomeTimestamp": "2025-03-01T10:00:00Z"}]},
        {"feedback": [{"card": "abc", "outcome": "overridden", "outcomeTimestamp": "yesterday"}]},
        {"feedback": []},
        {"cards": []},
        [],
    ],
    ids=[
        "bad-outcome",
        "accepted-without-suggestions",
        "no-card",
        "bad-time",
        "empty",
        "no-feedback",
        "array",
    ],
)
def test_malformed_feedback_is_rejected_and_not_stored(client: FlaskClient, body: Any) -> None:
    response = client.post(FEEDBACK_URL, json=body)
    assert response.status_code == 400
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    report = client.get("/admin/report").get_json()
    assert report["unknownCardFeedback"] == 0 and report["totals"]["feedbackReceived"] == 0


def test_admin_report_since_and_bad_since(client: FlaskClient) -> None:
    issue_card(client)
    assert client.get("/admin/report?since=2999-01-01").get_json()["totals"]["cardsShown"] == 0
    assert seizure_row(client.get("/admin/report?since=2000-01-01").get_json())["cardsShown"] == 1
    bad = client.get("/admin/report?since=last-tuesday")
    assert bad.status_code == 400
    assert bad.get_json()["resourceType"] == "OperationOutcome"


def test_admin_report_is_off_by_default(tmp_path: Path) -> None:
    app = build_app(tmp_path, f"sqlite:///{tmp_path / 'off.sqlite3'}", CDS_ADMIN_ENABLED="")
    try:
        assert app.test_client().get("/admin/report").status_code == 404
    finally:
        app.extensions["cds.audit"].close(timeout=5)


def test_hook_call_answers_while_the_database_is_down(
    tmp_path: Path, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = build_app(tmp_path, f"postgresql+psycopg://cds@127.0.0.1:{closed_port}/cds")
    client = app.test_client()
    try:
        issue_card(client)  # warm-up (first call loads lazily built parts)
        started = time.perf_counter()
        card = issue_card(client)
        assert time.perf_counter() - started < 0.5
        response = client.post(FEEDBACK_URL, json={"feedback": [overridden(card["uuid"], comment=COMMENT)]})
        assert response.status_code == 200
        assert response.get_json()["queued"] == 1
        report = client.get("/admin/report")
        assert report.status_code == 503
        assert report.get_json()["resourceType"] == "OperationOutcome"
    finally:
        app.extensions["cds.audit"].close(timeout=1)
    assert "audit" in caplog.text
    assert COMMENT not in caplog.text and "storage-test-patient" not in caplog.text
