"""Feedback is bounded before it reaches the database, and only the client a card was issued to may
send feedback for it (issue 15, items 1 and 5). Through the HTTP API."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.security import (
    PUBLIC_BASE,
    bearer,
    client_entry,
    jwks_of,
    make_keypair,
    mint_token,
    write_trusted_clients,
)
from helpers.storage_requests import (
    SERVICE,
    accepted,
    order_sign_with_seizure_history,
    overridden,
    seizure_card,
)
from sqlalchemy import func, select

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.metrics import FEEDBACK_REFUSED
from cds_service.storage.models import Feedback, IssuedCard

pytest_plugins = ["conftest_postgres"]

HOOK_URL = f"/cds-services/{SERVICE}"
FEEDBACK_URL = f"{HOOK_URL}/feedback"


@pytest.fixture
def build_app(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Flask]]:
    """Apps on this test's database; their audit stores are closed before the database goes away."""
    apps: list[Flask] = []

    def build(**env: str) -> Flask:
        values = {
            "CDS_DATA_DIR": str(tmp_path / "data"),
            "CDS_DATABASE_URL": database_url,
            "CDS_AUTH": "off",
            "CDS_MAX_BODY_BYTES": str(64 * 1024 * 1024),  # the entry bound, not the body bound, is tested
        }
        values.update(env)
        apps.append(create_app(Settings.from_env(values)))
        return apps[-1]

    yield build
    for app in apps:
        app.extensions["cds.audit"].close(timeout=5)


@pytest.fixture
def app(build_app: Callable[..., Flask]) -> Flask:
    return build_app()


def count(app: Flask, model: type) -> int:
    store = app.extensions["cds.audit"]
    assert store.flush(30)
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def issue_card(client: FlaskClient, headers: dict[str, str] | None = None) -> str:
    response = client.post(HOOK_URL, json=order_sign_with_seizure_history(), headers=headers or {})
    assert response.status_code == 200, response.get_json()
    return seizure_card(response.get_json()["cards"])["uuid"]


def test_too_many_entries_is_413_naming_the_limit(app: Flask) -> None:
    client = app.test_client()
    card = issue_card(client)
    entries = [accepted(card, when=f"2025-03-01T10:{i // 60:02d}:{i % 60:02d}Z") for i in range(101)]
    response = client.post(FEEDBACK_URL, json={"feedback": entries})
    assert response.status_code == 413
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "too-long" and issue["expression"] == ["feedback"]
    assert "at most 100" in issue["diagnostics"] and "CDS_FEEDBACK_MAX_ENTRIES" in issue["diagnostics"]
    assert count(app, Feedback) == 0
    # At the limit it is stored.
    response = client.post(FEEDBACK_URL, json={"feedback": entries[:100]})
    assert response.status_code == 200 and response.get_json()["stored"] == 100


def test_the_entry_limit_is_configurable(build_app: Callable[..., Flask]) -> None:
    client = build_app(CDS_FEEDBACK_MAX_ENTRIES="2").test_client()
    card = issue_card(client)
    three = [accepted(card, when=f"2025-03-01T10:00:0{i}Z") for i in range(3)]
    response = client.post(FEEDBACK_URL, json={"feedback": three})
    assert response.status_code == 413 and "at most 2" in response.get_json()["issue"][0]["diagnostics"]


def test_an_over_long_comment_is_413_naming_the_limit(app: Flask) -> None:
    client = app.test_client()
    card = issue_card(client)
    response = client.post(
        FEEDBACK_URL, json={"feedback": [overridden(card, code="benefit", comment="x" * 1001)]}
    )
    assert response.status_code == 413
    issue = response.get_json()["issue"][0]
    assert issue["expression"] == ["feedback[0].overrideReason.userComment"]
    assert "at most 1000" in issue["diagnostics"] and "CDS_FEEDBACK_MAX_COMMENT_CHARS" in issue["diagnostics"]
    assert "xxxx" not in issue["diagnostics"]  # the comment is never echoed
    assert count(app, Feedback) == 0
    ok = client.post(FEEDBACK_URL, json={"feedback": [overridden(card, code="benefit", comment="x" * 1000)]})
    assert ok.status_code == 200 and ok.get_json()["stored"] == 1


def test_too_many_accepted_suggestions_is_413(app: Flask) -> None:
    client = app.test_client()
    card = issue_card(client)
    entry = accepted(card, suggestions=tuple(f"s{i}" for i in range(51)))
    response = client.post(FEEDBACK_URL, json={"feedback": [entry]})
    assert response.status_code == 413
    assert response.get_json()["issue"][0]["expression"] == ["feedback[0].acceptedSuggestions"]


def test_a_65600_id_feedback_post_does_not_stop_the_audit_trail(app: Flask) -> None:
    # The issue's attack: 65,600 card ids in one body made the writer's IN (...) exceed PostgreSQL's
    # 65,535 bind parameters (SQLite's 32,766 too); retried for ever, every later card queued behind it.
    client = app.test_client()
    entries = [accepted(str(uuid.uuid4())) for _ in range(65_600)]
    response = client.post(FEEDBACK_URL, json={"feedback": entries})
    assert response.status_code == 413
    cards = {issue_card(client) for _ in range(30)}
    assert count(app, IssuedCard) == 30
    store = app.extensions["cds.audit"]
    with store.engine.connect() as conn:
        assert set(conn.execute(select(IssuedCard.card_uuid)).scalars()) == cards


# -- feedback only from the client that received the card --------------------------------------------
ISS_A = "https://ehr-a.example.org"
ISS_B = "https://ehr-b.example.org"


def test_feedback_for_another_clients_card_is_refused(
    tmp_path: Path, build_app: Callable[..., Flask]
) -> None:
    key_a, key_b = make_keypair("ES384"), make_keypair("ES384")
    clients = [client_entry(ISS_A, jwks=jwks_of(key_a)), client_entry(ISS_B, jwks=jwks_of(key_b))]
    trusted = write_trusted_clients(tmp_path, clients)
    app = build_app(
        CDS_AUTH="on",
        CDS_TRUSTED_CLIENTS=str(trusted),
        CDS_PUBLIC_BASE_URL=PUBLIC_BASE,
    )
    client = app.test_client()

    def headers(key: Any, iss: str, path: str) -> dict[str, str]:
        return bearer(mint_token(key, iss=iss, aud=f"{PUBLIC_BASE}{path}"))

    card = issue_card(client, headers(key_a, ISS_A, HOOK_URL))
    refused_before = FEEDBACK_REFUSED.labels(reason="other_client")._value.get()

    from_b = client.post(
        FEEDBACK_URL,
        json={"feedback": [overridden(card, code="benefit", comment="not mine")]},
        headers=headers(key_b, ISS_B, FEEDBACK_URL),
    )
    assert from_b.status_code == 200
    assert from_b.get_json() == {"stored": 0, "duplicates": 0, "unknownCards": [card]}
    assert count(app, Feedback) == 0
    assert FEEDBACK_REFUSED.labels(reason="other_client")._value.get() == refused_before + 1

    from_a = client.post(
        FEEDBACK_URL, json={"feedback": [accepted(card)]}, headers=headers(key_a, ISS_A, FEEDBACK_URL)
    )
    assert from_a.get_json() == {"stored": 1, "duplicates": 0, "unknownCards": []}
    store = app.extensions["cds.audit"]
    with store.engine.connect() as conn:
        assert conn.execute(select(Feedback.client_iss)).scalars().all() == [ISS_A]
