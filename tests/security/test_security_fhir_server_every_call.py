"""The fhirServer allow-list is judged on every call that names a server, through the real app.

Before, a client naming a server outside its list got 200 when the drug was unrelated or the prefetch
complete (no fetch, so no check); with auth off any address, cloud metadata included, was accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import responses
from flask import Flask
from helpers.builders import (
    ORDER_SIGN,
    amifampridine_order,
    empty_prefetch,
    epilepsy,
    ibuprofen_order,
    order_sign,
    searchset,
    topics,
)
from helpers.security import (
    FHIR_SERVER,
    ISS,
    PUBLIC_BASE,
    KeyPair,
    bearer,
    client_entry,
    jwks_of,
    make_keypair,
    mint_token,
    write_trusted_clients,
)

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.security.fhir_allowlist import fhir_server_problem

OTHER_SERVER = "https://other-ehr.example.net/fhir"
FHIR_AUTH = {"access_token": "ehr-token-" + "q7" * 10, "token_type": "Bearer"}
METADATA_SERVERS = [
    "http://169.254.169.254/latest/meta-data",
    "http://169.254.170.2/v2",
    "http://[fe80::1]/fhir",
    "http://[fd00:ec2::254]/latest",
    "http://[::ffff:169.254.169.254]/latest",
    "http://metadata.google.internal/computeMetadata/v1",
    "http://METADATA.google.internal./computeMetadata/v1",
    "http://100.100.100.200/latest/meta-data",
]


@pytest.fixture(scope="module")
def key() -> KeyPair:
    return make_keypair("ES384")


def _auth_on_app(tmp_path: Path, key: KeyPair) -> Flask:
    path = write_trusted_clients(tmp_path, [client_entry(ISS, jwks=jwks_of(key))], fmt="json")
    env = {
        "CDS_DATA_DIR": str(tmp_path / "data"),
        "CDS_TRUSTED_CLIENTS": str(path),
        "CDS_PUBLIC_BASE_URL": PUBLIC_BASE,
    }
    return create_app(Settings.from_env(env))


def _call(app: Flask, key: KeyPair | None, body: dict) -> tuple[int, dict]:
    headers = bearer(mint_token(key, aud=PUBLIC_BASE + ORDER_SIGN)) if key else {}
    with responses.RequestsMock() as mock:  # nothing registered: any outbound request would fail the test
        response = app.test_client().post(ORDER_SIGN, json=body, headers=headers)
        assert len(mock.calls) == 0
    return response.status_code, response.get_json()


def _assert_forbidden(status: int, body: dict) -> None:
    assert status == 403
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "forbidden"
    assert body["issue"][0]["expression"] == ["fhirServer"]


# --- auth on: the calling client's fhir_servers ------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        order_sign(ibuprofen_order(), fhirServer=OTHER_SERVER, fhirAuthorization=FHIR_AUTH),
        order_sign(amifampridine_order(), prefetch=empty_prefetch(), fhirServer=OTHER_SERVER),
        order_sign(ibuprofen_order(), prefetch=empty_prefetch(), fhirServer=OTHER_SERVER),
    ],
    ids=["unrelated-drug", "complete-prefetch", "unrelated-drug-complete-prefetch"],
)
def test_an_unregistered_server_gets_403_whatever_the_drug_and_prefetch(tmp_path, key, body):
    _assert_forbidden(*_call(_auth_on_app(tmp_path, key), key, body))


def test_the_registered_server_still_works_with_no_fetch_needed(tmp_path, key):
    app = _auth_on_app(tmp_path, key)
    unrelated = order_sign(ibuprofen_order(), fhirServer=FHIR_SERVER, fhirAuthorization=FHIR_AUTH)
    prefetch = {**empty_prefetch(), "conditions": searchset(epilepsy())}
    complete = order_sign(amifampridine_order(), prefetch=prefetch, fhirServer=FHIR_SERVER)
    assert _call(app, key, unrelated) == (200, {"cards": []})
    status, body = _call(app, key, complete)
    assert status == 200 and topics(body) == ["seizure-history"]  # the checks ran on the prefetch


def test_the_403_comes_before_request_validation_only(tmp_path, key):
    # A malformed request is still told what is malformed (400); the allow-list does not hide it.
    app = _auth_on_app(tmp_path, key)
    body = order_sign(ibuprofen_order(), fhirServer=OTHER_SERVER)
    del body["context"]["patientId"]
    status, outcome = _call(app, key, body)
    assert status == 400 and outcome["issue"][0]["expression"] == ["context.patientId"]


# --- auth off: loopback and CDS_FHIR_SERVER_ALLOWLIST only --------------------------------------------


def _auth_off_app(make_app, allowlist: str = "") -> Flask:
    return make_app(CDS_FHIR_SERVER_ALLOWLIST=allowlist)


@pytest.mark.parametrize(
    "server", ["https://fhir.example.com/r4", "http://10.0.0.5/fhir", "http://0.0.0.0/fhir"]
)
def test_auth_off_refuses_a_server_that_is_neither_loopback_nor_listed(make_app, server):
    status, body = _call(_auth_off_app(make_app), None, order_sign(ibuprofen_order(), fhirServer=server))
    _assert_forbidden(status, body)
    assert "CDS_FHIR_SERVER_ALLOWLIST" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "server", ["http://127.0.0.1:8103/fhir", "http://localhost:8080/fhir", "http://[::1]:9090/fhir"]
)
def test_auth_off_accepts_loopback_servers(make_app, server):
    body = order_sign(ibuprofen_order(), fhirServer=server, fhirAuthorization=FHIR_AUTH)
    assert _call(_auth_off_app(make_app), None, body) == (200, {"cards": []})


def test_auth_off_accepts_a_listed_server(make_app):
    app = _auth_off_app(make_app, "https://fhir.example.com/r4/")
    body = order_sign(ibuprofen_order(), fhirServer="https://FHIR.example.com:443/r4")
    assert _call(app, None, body) == (200, {"cards": []})


@pytest.mark.parametrize("server", METADATA_SERVERS)
def test_metadata_and_link_local_servers_are_refused_with_auth_off(make_app, server):
    status, body = _call(_auth_off_app(make_app), None, order_sign(ibuprofen_order(), fhirServer=server))
    _assert_forbidden(status, body)
    assert "metadata" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("server", METADATA_SERVERS)
def test_metadata_and_link_local_servers_are_refused_in_every_mode_unless_listed(server):
    for allowed, loopback in ((None, False), ((), True), (("https://ehr.example.org/fhir",), False)):
        problem = fhir_server_problem(server, allowed, allow_http=True, allow_loopback=loopback)
        assert problem is not None and "metadata" in problem
    listed = fhir_server_problem(server, [_normalised(server)], allow_http=True)
    assert listed is None


def test_a_listed_metadata_address_is_the_operators_explicit_choice(make_app):
    server = "http://169.254.169.254/fhir"
    app = _auth_off_app(make_app, server)
    assert _call(app, None, order_sign(ibuprofen_order(), fhirServer=server)) == (200, {"cards": []})


def _normalised(url: str) -> str:
    from cds_service.security.fhir_allowlist import normalize_base_url

    return normalize_base_url(url)
