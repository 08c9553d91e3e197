"""Security through the real application (create_app): the three endpoints, fhirServer, /readyz."""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path

import pytest
import responses
from flask import Flask
from helpers.security import (
    FHIR_SERVER,
    ISS,
    PUBLIC_BASE,
    SERVICE_IDS,
    KeyPair,
    bearer,
    client_entry,
    jwks_of,
    make_keypair,
    mint_token,
    write_trusted_clients,
)

from cds_service.app import create_app
from cds_service.config import ConfigError, Settings

SANDBOX_REQUEST = Path(__file__).resolve().parents[3] / "shared/test-data/sandbox-requests"
SERVICE = "amifampridine-order-select"
FHIR_TOKEN = "fhir-bearer-" + "Zx9" * 12


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return make_keypair("RS384")


def _app(tmp_path: Path, env: dict[str, str]) -> Flask:
    return create_app(Settings.from_env({"CDS_DATA_DIR": str(tmp_path / "data"), **env}))


@pytest.fixture
def app(tmp_path: Path, key: KeyPair) -> Flask:
    path = write_trusted_clients(tmp_path, [client_entry(ISS, jwks=jwks_of(key))], fmt="json")
    return _app(tmp_path, {"CDS_TRUSTED_CLIENTS": str(path), "CDS_PUBLIC_BASE_URL": PUBLIC_BASE})


def hook_request(fhir_server: str) -> dict:
    path = SANDBOX_REQUEST / "order-select-ibuprofen-800.json"
    if not path.is_file():
        pytest.skip(f"{path} not available")
    body = copy.deepcopy(json.loads(path.read_text()))
    body.pop("prefetch", None)  # force the fallback to the FHIR server
    # An amifampridine order (matched by name), so the service needs the patient's record.
    order = body["context"]["draftOrders"]["entry"][0]["resource"]
    order["medicationCodeableConcept"] = {"text": "Firdapse (amifampridine) 10 MG Oral Tablet"}
    body["fhirServer"] = fhir_server
    body["fhirAuthorization"] = {
        "access_token": FHIR_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds-service",
    }
    return body


def test_container_default_refuses_to_start_without_trusted_clients(tmp_path):
    with pytest.raises(ConfigError, match="CDS_TRUSTED_CLIENTS"):
        _app(tmp_path, {})


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/cds-services", None),
        ("POST", f"/cds-services/{SERVICE_IDS[0]}", {}),
        ("POST", f"/cds-services/{SERVICE_IDS[1]}", {}),
        ("POST", f"/cds-services/{SERVICE_IDS[2]}", {}),
        ("POST", f"/cds-services/{SERVICE_IDS[1]}/feedback", {"feedback": []}),
    ],
)
def test_every_endpoint_needs_a_token_for_itself(app, key, method, path, body):
    client = app.test_client()
    anonymous = client.open(path, method=method, json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert anonymous.get_json()["resourceType"] == "OperationOutcome"
    assert anonymous.headers["Cache-Control"] == "no-store"
    other = f"{PUBLIC_BASE}/cds-services/{'x' if path.endswith('feedback') else 'other-service'}"
    assert (
        client.open(path, method=method, json=body, headers=bearer(mint_token(key, aud=other))).status_code
        == 401
    )
    own = client.open(path, method=method, json=body, headers=bearer(mint_token(key, aud=PUBLIC_BASE + path)))
    assert own.status_code not in (401, 403)  # past security; the protocol layer judges the body
    assert own.headers["Cache-Control"] == "no-store"
    assert own.headers["X-Content-Type-Options"] == "nosniff"


def test_discovery_with_a_valid_token(app, key):
    response = app.test_client().get(
        "/cds-services", headers=bearer(mint_token(key, aud=f"{PUBLIC_BASE}/cds-services"))
    )
    assert response.status_code == 200
    assert {s["id"] for s in response.get_json()["services"]} >= set(SERVICE_IDS)


def test_health_needs_no_token(app):
    assert app.test_client().get("/healthz").status_code == 200


def test_unregistered_fhir_server_403_before_any_request(app, key, caplog):
    caplog.set_level(logging.DEBUG)
    path = f"/cds-services/{SERVICE}"
    with responses.RequestsMock() as mock:
        response = app.test_client().post(
            path,
            json=hook_request("https://attacker.example/fhir"),
            headers=bearer(mint_token(key, aud=PUBLIC_BASE + path)),
        )
        assert len(mock.calls) == 0
    assert response.status_code == 403
    assert response.get_json()["issue"][0]["code"] == "forbidden"
    assert FHIR_TOKEN not in response.get_data(as_text=True)
    assert FHIR_TOKEN not in caplog.text


def test_registered_fhir_server_gets_the_token_and_nobody_else(app, key, caplog):
    caplog.set_level(logging.DEBUG)
    path = f"/cds-services/{SERVICE}"
    token = mint_token(key, aud=PUBLIC_BASE + path)
    empty = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, re.compile(re.escape(FHIR_SERVER) + r"/.*"), json=empty)
        response = app.test_client().post(path, json=hook_request(FHIR_SERVER), headers=bearer(token))
        urls = [call.request.url for call in mock.calls]
        auth = {call.request.headers.get("Authorization") for call in mock.calls}
    assert response.status_code not in (401, 403), response.get_data(as_text=True)
    assert urls and all(url.startswith(FHIR_SERVER + "/") for url in urls)
    assert auth == {f"Bearer {FHIR_TOKEN}"}
    assert FHIR_TOKEN not in caplog.text and token not in caplog.text
    assert FHIR_TOKEN not in response.get_data(as_text=True)


def test_auth_off_is_shown_on_readyz(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        app = _app(tmp_path, {"CDS_AUTH": "off"})
    assert "authentication is DISABLED" in caplog.text
    ready = app.test_client().get("/readyz").get_json()
    assert any("CDS_AUTH=off" in warning for warning in ready.get("warnings", []))
    assert app.test_client().get("/cds-services").status_code == 200
