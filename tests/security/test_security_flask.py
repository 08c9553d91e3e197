"""install_security and authorize_fhir_server on a small Flask app with the service's URL shapes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import requests
import responses
from flask import Flask, g, jsonify, request
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

from cds_service import metrics
from cds_service.config import ConfigError, Settings
from cds_service.hooks.errors import CdsError
from cds_service.security import AUTH_OFF_WARNING, authorize_fhir_server, install_security

SERVICE = SERVICE_IDS[1]


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return make_keypair("ES384")


def build_app(env: dict[str, str]) -> Flask:
    app = Flask("security-test")
    install_security(app, Settings.from_env(env))

    @app.get("/cds-services")
    def discovery():
        return jsonify(services=[], client=g.cds_client.iss if g.cds_client else None)

    @app.post("/cds-services/<service_id>")
    def service(service_id: str):
        fhir_server = (request.get_json(silent=True) or {}).get("fhirServer")
        if fhir_server is not None:
            authorize_fhir_server(fhir_server)
            requests.get(f"{fhir_server}/Patient/123", timeout=2)  # stands in for the FHIR client
        return jsonify(cards=[])

    @app.post("/cds-services/<service_id>/feedback")
    def feedback(service_id: str):
        return jsonify(stored=0)

    @app.get("/healthz")
    def healthz():
        return "ok"

    @app.get("/preview")
    def preview():
        response = app.make_response("<html></html>")
        response.headers["Content-Security-Policy"] = "default-src 'self'"
        return response

    @app.errorhandler(CdsError)
    def cds_error(exc: CdsError):
        return jsonify(exc.body()), exc.status

    return app


@pytest.fixture
def app(tmp_path: Path, key: KeyPair) -> Flask:
    path = write_trusted_clients(tmp_path, [client_entry(ISS, jwks=jwks_of(key))])
    return build_app({"CDS_TRUSTED_CLIENTS": str(path), "CDS_PUBLIC_BASE_URL": PUBLIC_BASE + "/"})


def endpoints() -> list[tuple[str, str]]:
    return [
        ("GET", "/cds-services"),
        ("POST", f"/cds-services/{SERVICE}"),
        ("POST", f"/cds-services/{SERVICE}/feedback"),
    ]


@pytest.mark.parametrize(("method", "path"), endpoints())
def test_valid_token_passes_on_every_endpoint(app, key, method, path):
    token = mint_token(key, aud=PUBLIC_BASE + path)
    response = app.test_client().open(path, method=method, headers=bearer(token), json={})
    assert response.status_code == 200


@pytest.mark.parametrize(("method", "path"), endpoints())
def test_missing_or_wrong_token_gets_a_bare_401(app, key, method, path):
    client = app.test_client()
    before = metrics.JWT_FAILURES.labels(reason="aud")._value.get()
    for headers, expected_reason in (
        ({}, "missing_authorization"),
        (bearer("not-a-jwt"), "malformed"),
        (bearer(mint_token(key, aud=f"{PUBLIC_BASE}/cds-services/another-service")), "aud"),
    ):
        response = client.open(path, method=method, headers=headers, json={})
        assert response.status_code == 401, expected_reason
        assert response.headers["WWW-Authenticate"] == "Bearer"
        body = response.get_json()
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["diagnostics"] == "unauthorized"  # no hint about which check failed
        assert expected_reason not in response.get_data(as_text=True)
    assert metrics.JWT_FAILURES.labels(reason="aud")._value.get() == before + 1


def test_audience_is_the_public_url_not_the_internal_one(app, key):
    internal = mint_token(key, aud="http://localhost/cds-services")
    assert app.test_client().get("/cds-services", headers=bearer(internal)).status_code == 401
    public = mint_token(key, aud=f"{PUBLIC_BASE}/cds-services")
    assert app.test_client().get("/cds-services", headers=bearer(public)).status_code == 200


def test_without_public_base_url_the_request_url_is_the_audience(tmp_path, key, caplog):
    path = write_trusted_clients(tmp_path, [client_entry(ISS, jwks=jwks_of(key))])
    with caplog.at_level(logging.WARNING, logger="cds_service.security"):
        app = build_app({"CDS_TRUSTED_CLIENTS": str(path)})
    assert "CDS_PUBLIC_BASE_URL is not set" in caplog.text
    token = mint_token(key, aud="http://localhost/cds-services")
    assert app.test_client().get("/cds-services", headers=bearer(token)).status_code == 200


def test_replayed_token_is_refused(app, key):
    token = mint_token(key, aud=f"{PUBLIC_BASE}/cds-services")
    client = app.test_client()
    assert client.get("/cds-services", headers=bearer(token)).status_code == 200
    assert client.get("/cds-services", headers=bearer(token)).status_code == 401


def test_the_authenticated_client_is_on_g(app, key):
    response = app.test_client().get(
        "/cds-services", headers=bearer(mint_token(key, aud=f"{PUBLIC_BASE}/cds-services"))
    )
    assert response.get_json()["client"] == ISS


def test_preflight_and_other_paths_need_no_token(app):
    client = app.test_client()
    assert client.options(f"/cds-services/{SERVICE}").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/admin/anything").status_code == 401  # admin is protected even when it 404s


def test_security_headers_on_every_response(app, key):
    client = app.test_client()
    responses_seen = [
        client.get("/healthz"),
        client.get("/cds-services"),  # 401
        client.get("/cds-services", headers=bearer(mint_token(key, aud=f"{PUBLIC_BASE}/cds-services"))),
        client.get("/no-such-page"),  # 404
    ]
    for response in responses_seen:
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "max-age=" in response.headers["Strict-Transport-Security"]


def test_a_view_may_set_its_own_csp(app):
    response = app.test_client().get("/preview")
    assert response.headers["Content-Security-Policy"] == "default-src 'self'"
    assert response.headers["Cache-Control"] == "no-store"


# --- configuration at start -------------------------------------------------------------------------


def test_auth_on_without_trusted_clients_refuses_to_start():
    with pytest.raises(ConfigError, match="CDS_TRUSTED_CLIENTS"):
        build_app({})


def test_unreadable_trusted_clients_file_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        build_app({"CDS_TRUSTED_CLIENTS": str(tmp_path / "missing.yaml")})


def test_auth_off_warns_loudly_and_lets_calls_through(caplog):
    with caplog.at_level(logging.WARNING, logger="cds_service.security"):
        app = build_app({"CDS_AUTH": "off"})
    assert any(r.levelno == logging.WARNING and "DISABLED" in r.getMessage() for r in caplog.records)
    assert app.extensions["cds.auth_warning"] == AUTH_OFF_WARNING
    response = app.test_client().get("/cds-services")
    assert response.status_code == 200
    assert response.get_json()["client"] is None
    assert response.headers["Cache-Control"] == "no-store"


def test_auth_on_sets_no_warning(app):
    assert "cds.auth_warning" not in app.extensions


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CDS_AUTH": "off", "CDS_JWT_ALGORITHMS": "HS256"}, "HS256"),
        ({"CDS_AUTH": "off", "CDS_JWT_ALGORITHMS": "none"}, "none"),
        ({"CDS_AUTH": "off", "CDS_JWT_LEEWAY": "lots"}, "CDS_JWT_LEEWAY"),
        ({"CDS_AUTH": "maybe"}, "CDS_AUTH"),
        ({"CDS_AUTH": "off", "CDS_PUBLIC_BASE_URL": "cds.example.org"}, "CDS_PUBLIC_BASE_URL"),
        ({"CDS_AUTH": "off", "CDS_FHIR_SERVER_ALLOWLIST": "ftp://x"}, "CDS_FHIR_SERVER_ALLOWLIST"),
    ],
)
def test_bad_settings_stop_the_start_with_one_line(env, message):
    with pytest.raises(ConfigError, match=message) as info:
        build_app(env)
    assert "\n" not in str(info.value)


# --- fhirServer allow-list ----------------------------------------------------------------------------


def _hook_call(app: Flask, key: KeyPair, fhir_server: str):
    path = f"/cds-services/{SERVICE}"
    token = mint_token(key, aud=PUBLIC_BASE + path)
    return app.test_client().post(path, headers=bearer(token), json={"fhirServer": fhir_server})


@pytest.mark.parametrize(
    "fhir_server",
    [
        "https://evil.example/fhir",
        "https://ehr.example.org/fhir/r4/../../internal",
        "https://ehr.example.org/fhir",
        "http://ehr.example.org/fhir/r4",
        "https://user:pw@ehr.example.org/fhir/r4",
        "http://169.254.169.254/latest/meta-data",
        "file:///etc/passwd",
    ],
)
def test_unregistered_fhir_server_gets_403_and_no_request(app, key, fhir_server):
    with responses.RequestsMock() as mock:  # no URL registered: any outbound request would be recorded
        response = _hook_call(app, key, fhir_server)
        assert response.status_code == 403
        assert response.get_json()["resourceType"] == "OperationOutcome"
        assert response.get_json()["issue"][0]["code"] == "forbidden"
        assert len(mock.calls) == 0


@pytest.mark.parametrize("variant", [FHIR_SERVER, FHIR_SERVER + "/", "HTTPS://EHR.example.org:443/fhir/r4"])
def test_registered_fhir_server_is_called(app, key, variant):
    with responses.RequestsMock() as mock:
        mock.get(f"{variant}/Patient/123", json={"resourceType": "Patient"})
        assert _hook_call(app, key, variant).status_code == 200
        assert len(mock.calls) == 1


def test_auth_off_with_allowlist(caplog):
    app = build_app({"CDS_AUTH": "off", "CDS_FHIR_SERVER_ALLOWLIST": "https://fhir.example.org/r4/"})
    client = app.test_client()
    with responses.RequestsMock() as mock:
        mock.get("https://fhir.example.org/r4/Patient/123", json={})
        ok = client.post(f"/cds-services/{SERVICE}", json={"fhirServer": "https://fhir.example.org/r4"})
        refused = client.post(f"/cds-services/{SERVICE}", json={"fhirServer": "https://other.example.org/r4"})
        assert (ok.status_code, refused.status_code) == (200, 403)
        assert len(mock.calls) == 1


def test_auth_off_http_needs_explicit_permission():
    strict = build_app({"CDS_AUTH": "off"})
    local = build_app({"CDS_AUTH": "off", "CDS_ALLOW_HTTP_FHIR": "true"})
    url = "http://127.0.0.1:8080/fhir"
    with responses.RequestsMock() as mock:
        mock.get(f"{url}/Patient/123", json={})
        body = {"fhirServer": url}
        assert strict.test_client().post(f"/cds-services/{SERVICE}", json=body).status_code == 403
        assert local.test_client().post(f"/cds-services/{SERVICE}", json=body).status_code == 200
        assert len(mock.calls) == 1


# --- logs ---------------------------------------------------------------------------------------------


def test_tokens_never_reach_the_logs(app, key, caplog):
    """Every outcome — accepted, each kind of rejection, refused fhirServer — logs no token material."""
    caplog.set_level(logging.DEBUG)
    client = app.test_client()
    aud = f"{PUBLIC_BASE}/cds-services/{SERVICE}"
    tokens = [
        mint_token(key, aud=aud),
        mint_token(key, aud=aud + "/feedback"),
        mint_token(key, aud=aud, exp=1, iat=0),
        mint_token(key, aud=aud, iss="https://evil.example"),
        mint_token(make_keypair("ES384", kid=key.kid), aud=aud),
        mint_token(key, aud=aud, headers={"jku": "https://evil.example/jwks"}),
    ]
    replayed = tokens[0]
    fhir_token = "fhir-access-token-" + "s3cr3t" * 5
    fhir_authorization = {"access_token": fhir_token, "token_type": "Bearer", "scope": "patient/*.read"}
    with responses.RequestsMock() as mock:
        mock.get(f"{FHIR_SERVER}/Patient/123", json={})
        for token in [*tokens, replayed]:
            client.post(
                f"/cds-services/{SERVICE}",
                headers=bearer(token),
                json={"fhirServer": FHIR_SERVER, "fhirAuthorization": fhir_authorization},
            )
        client.post(
            f"/cds-services/{SERVICE}",
            headers=bearer(mint_token(key, aud=aud)),
            json={"fhirServer": "https://evil.example/fhir", "fhirAuthorization": fhir_authorization},
        )
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "JWT rejected: check=aud" in logged and "check=replay" in logged and "check=exp" in logged
    assert f"kid={key.kid}" in logged and f"iss={ISS}" in logged
    for token in [*tokens, fhir_token]:
        assert token not in logged
        for segment in token.split("."):
            if len(segment) > 20:
                assert segment not in logged
