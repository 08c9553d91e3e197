"""The CDS Hooks 2.0.1 specification's own JWT example (header, payload, JWKS, example private key).

Files spec-22..25 in ../shared/cds-hooks/hl7-cds-hooks-2.0.1-examples/: the header names `jku`, the
payload is for https://cds.example.org/cds-services/some-service and expired in 2015.
"""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
import responses

from cds_service.security.config import TrustedClient
from cds_service.security.jwks import JwksCache
from cds_service.security.jwt_verifier import AuthError, JwtVerifier

EXAMPLES = Path(__file__).resolve().parents[3] / "shared/cds-hooks/hl7-cds-hooks-2.0.1-examples"


def _load(name: str) -> dict:
    path = EXAMPLES / name
    if not path.is_file():
        pytest.skip(f"{path} not available")
    return json.loads(path.read_text())


@pytest.fixture
def spec():
    header, payload = _load("spec-22-jwt-header.json"), _load("spec-23-jwt-payload.json")
    public, private = _load("spec-24-jwks-public.json"), _load("spec-25-jwk-private-example-only.json")
    token = jwt.encode(payload, jwt.PyJWK(private).key, algorithm=header["alg"], headers=header)
    client = TrustedClient(
        iss=payload["iss"], jwks_urls=(header["jku"],), tenants=(payload["tenant"],), fhir_servers=()
    )
    with responses.RequestsMock() as mock:
        mock.get(header["jku"], json=public)
        yield header, payload, token, client, mock


def _verifier(client: TrustedClient, now: float, **kwargs: float) -> JwtVerifier:
    return JwtVerifier([client], jwks_cache=JwksCache(), clock=lambda: now, **kwargs)


def test_the_spec_example_verifies_at_its_own_time(spec):
    header, payload, token, client, mock = spec
    # The example's lifetime (3.5 years) is beyond any sane limit; allow it for this one check.
    verifier = _verifier(client, payload["iat"] + 60, max_lifetime=2e8)
    result = verifier.verify(token, payload["aud"])
    assert (result.iss, result.tenant, result.kid) == (payload["iss"], payload["tenant"], header["kid"])
    assert [call.request.url for call in mock.calls] == [header["jku"]]


def test_the_spec_example_is_rejected_today(spec):
    _, payload, token, client, _ = spec
    with pytest.raises(AuthError) as info:
        _verifier(client, 1_800_000_000, max_lifetime=2e8).verify(token, payload["aud"])
    assert info.value.reason == "exp"
    with pytest.raises(AuthError) as info:
        _verifier(client, payload["iat"] + 60).verify(token, payload["aud"])
    assert info.value.reason == "lifetime"


def test_the_spec_example_for_another_endpoint_is_rejected(spec):
    _, payload, token, client, _ = spec
    with pytest.raises(AuthError) as info:
        _verifier(client, payload["iat"] + 60, max_lifetime=2e8).verify(
            token, "https://cds.example.org/cds-services/amifampridine-order-sign"
        )
    assert info.value.reason == "aud"


def test_the_spec_jwks_has_no_private_part():
    public = _load("spec-24-jwks-public.json")
    assert all("d" not in key for key in public["keys"])
