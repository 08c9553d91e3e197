"""GET /admin/report shows the calling client its own data only; every client's only to a marked client.

Before, any trusted client read every client's counts and free-text override reasons.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers.security import (
    PUBLIC_BASE,
    KeyPair,
    bearer,
    client_entry,
    jwks_of,
    make_keypair,
    mint_token,
    write_trusted_clients,
)
from helpers.storage_requests import (
    SEIZURE_TOPIC,
    SERVICE,
    order_sign_with_seizure_history,
    overridden,
    seizure_card,
)

from cds_service.app import create_app
from cds_service.config import ConfigError, Settings
from cds_service.security.config import load_trusted_clients

ISS_A, ISS_B, ISS_ADMIN = "https://ehr-a.example.org", "https://ehr-b.example.org", "https://pharmacy.example"
TENANT_A = "hospital-a"
pytest_plugins = ["conftest_postgres"]
_MINUTES = itertools.count()


@pytest.fixture(scope="module")
def keys() -> dict[str, KeyPair]:
    return {iss: make_keypair("ES384") for iss in (ISS_A, ISS_B, ISS_ADMIN)}


@pytest.fixture
def app(tmp_path: Path, database_url: str, keys: dict[str, KeyPair]) -> Iterator[Flask]:
    entries = [
        client_entry(ISS_A, jwks=jwks_of(keys[ISS_A]), tenants=[TENANT_A]),
        client_entry(ISS_B, jwks=jwks_of(keys[ISS_B])),
        {**client_entry(ISS_ADMIN, jwks=jwks_of(keys[ISS_ADMIN])), "report_all_clients": True},
    ]
    path = write_trusted_clients(tmp_path, entries, fmt="json")
    env = {
        "CDS_DATA_DIR": str(tmp_path / "data"),
        "CDS_DATABASE_URL": database_url,
        "CDS_TRUSTED_CLIENTS": str(path),
        "CDS_PUBLIC_BASE_URL": PUBLIC_BASE,
        "CDS_ADMIN_ENABLED": "true",
    }
    app = create_app(Settings.from_env(env))
    yield app
    app.extensions["cds.audit"].close(timeout=5)


def _as(keys: dict[str, KeyPair], iss: str, path: str, tenant: str | None = None) -> dict[str, str]:
    return bearer(mint_token(keys[iss], iss=iss, aud=PUBLIC_BASE + path.split("?")[0], tenant=tenant))


def _card_with_override(client: FlaskClient, keys, iss: str, reason: str, tenant: str | None = None) -> str:
    path = f"/cds-services/{SERVICE}"
    response = client.post(path, json=order_sign_with_seizure_history(), headers=_as(keys, iss, path, tenant))
    assert response.status_code == 200
    card = seizure_card(response.get_json()["cards"])
    _override(client, keys, iss, card["uuid"], reason, tenant)
    return card["uuid"]


def _override(
    client: FlaskClient, keys, iss: str, card: str, reason: str, tenant: str | None = None, stored: int = 1
) -> dict[str, Any]:
    path = f"/cds-services/{SERVICE}/feedback"
    # A distinct outcome time each: the same card, outcome and time would be one (deduplicated) entry.
    when = f"2025-03-01T10:{next(_MINUTES):02d}:00Z"
    feedback = {"feedback": [overridden(card, code=reason, when=when)]}
    answer = client.post(path, json=feedback, headers=_as(keys, iss, path, tenant)).get_json()
    assert answer["stored"] == stored, answer
    return answer


def _report(client: FlaskClient, keys, iss: str, query: str = "", tenant: str | None = None) -> Any:
    path = f"/admin/report{query}"
    return client.get(path, headers=_as(keys, iss, path, tenant))


def _reasons(report: dict[str, Any]) -> list[str]:
    [row] = [r for r in report["rows"] if r["topic"] == SEIZURE_TOPIC]
    return sorted(reason["code"] for reason in row["topOverrideReasons"])


def test_each_client_sees_only_its_own_cards_and_override_reasons(app, keys):
    client = app.test_client()
    _card_with_override(client, keys, ISS_A, "reason-of-a", tenant=TENANT_A)
    _card_with_override(client, keys, ISS_B, "reason-of-b")
    _card_with_override(client, keys, ISS_B, "another-reason-of-b")

    mine = _report(client, keys, ISS_A, tenant=TENANT_A)
    assert mine.status_code == 200
    report = mine.get_json()
    assert report["scope"] == {"client": ISS_A, "tenant": TENANT_A}
    assert _reasons(report) == ["reason-of-a"]
    assert report["totals"]["overridden"] == 1

    theirs = _report(client, keys, ISS_B).get_json()
    assert theirs["scope"] == {"client": ISS_B, "tenant": None}
    assert _reasons(theirs) == ["another-reason-of-b", "reason-of-b"]
    assert theirs["totals"]["overridden"] == 2


def test_feedback_another_client_sent_about_my_card_is_refused_and_not_in_my_report(app, keys):
    client = app.test_client()
    card_of_a = _card_with_override(client, keys, ISS_A, "reason-of-a", tenant=TENANT_A)
    # Feedback is taken only for cards issued to the same client: B's entry is not stored.
    answer = _override(client, keys, ISS_B, card_of_a, "reason-b-wrote-on-a-card", stored=0)
    assert card_of_a in answer["unknownCards"]
    report_a = _report(client, keys, ISS_A, tenant=TENANT_A).get_json()
    assert _reasons(report_a) == ["reason-of-a"]
    report_b = _report(client, keys, ISS_B).get_json()
    assert report_b["rows"] == []
    assert b"reason-b-wrote-on-a-card" not in _report(client, keys, ISS_A, tenant=TENANT_A).data


def test_client_all_is_refused_to_an_ordinary_client(app, keys):
    client = app.test_client()
    _card_with_override(client, keys, ISS_B, "reason-of-b")
    response = _report(client, keys, ISS_A, "?client=all", tenant=TENANT_A)
    assert response.status_code == 403
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "forbidden" and "report_all_clients" in issue["diagnostics"]
    assert b"reason-of-b" not in response.data


def test_client_all_is_granted_to_a_client_marked_for_it(app, keys):
    client = app.test_client()
    _card_with_override(client, keys, ISS_A, "reason-of-a", tenant=TENANT_A)
    _card_with_override(client, keys, ISS_B, "reason-of-b")
    own = _report(client, keys, ISS_ADMIN).get_json()
    assert own["scope"] == {"client": ISS_ADMIN, "tenant": None} and own["rows"] == []
    everything = _report(client, keys, ISS_ADMIN, "?client=all").get_json()
    assert everything["scope"] == {"client": "all"}
    assert _reasons(everything) == ["reason-of-a", "reason-of-b"]


def test_any_other_client_parameter_is_a_400(app, keys):
    response = _report(app.test_client(), keys, ISS_B, f"?client={ISS_A}")
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["client"]


def test_with_auth_off_the_report_shows_every_client_and_says_so(make_app):
    report = make_app(CDS_ADMIN_ENABLED="true").test_client().get("/admin/report").get_json()
    assert report["scope"]["client"] == "all"
    assert "CDS_AUTH=off" in report["scope"]["note"]


def test_report_all_clients_must_be_a_boolean(tmp_path, keys):
    entry = {**client_entry(ISS_A, jwks=jwks_of(keys[ISS_A])), "report_all_clients": "yes"}
    with pytest.raises(ConfigError, match="report_all_clients"):
        load_trusted_clients(write_trusted_clients(tmp_path, [entry], fmt="json"))
