"""The JWT verifier on its own: every check, in order, with keys generated here and JWKS over HTTPS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from helpers.security import (
    FHIR_SERVER,
    ISS,
    JWKS_URL,
    PUBLIC_BASE,
    KeyPair,
    client_entry,
    jwks_of,
    make_keypair,
    mint_token,
    write_trusted_clients,
)

from cds_service.security.config import load_trusted_clients
from cds_service.security.jwks import JwksCache
from cds_service.security.jwt_verifier import AuthError, JwtVerifier

AUD = f"{PUBLIC_BASE}/cds-services/amifampridine-order-sign"
OTHER_AUD = f"{PUBLIC_BASE}/cds-services/amifampridine-order-select"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def es384() -> KeyPair:
    return make_keypair("ES384")


@pytest.fixture(scope="module")
def rs384() -> KeyPair:
    return make_keypair("RS384")


@pytest.fixture
def jwks_server(es384: KeyPair, rs384: KeyPair):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(JWKS_URL, json=jwks_of(es384, rs384))
        yield mock


def make_verifier(tmp_path: Path, clock: FakeClock | None = None, **entry: object) -> JwtVerifier:
    entry.setdefault("jwks_url", JWKS_URL)
    path = write_trusted_clients(tmp_path, [client_entry(ISS, **entry)])  # type: ignore[arg-type]
    return JwtVerifier(load_trusted_clients(path), jwks_cache=JwksCache(clock=clock or FakeClock()))


def reason(verifier: JwtVerifier, token: str, audience: str = AUD) -> str:
    with pytest.raises(AuthError) as info:
        verifier.verify(token, audience)
    return info.value.reason


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, payload: dict) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"


def claims(**extra: object) -> dict:
    now = int(time.time())
    return {"iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": "j-1", **extra}


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_valid_token_passes_and_names_the_client(tmp_path, jwks_server, es384, rs384, alg):
    key = es384 if alg == "ES384" else rs384
    verifier = make_verifier(tmp_path, tenants=None)
    client = verifier.verify(mint_token(key, aud=AUD, tenant="t-1"), AUD)
    assert client.iss == ISS
    assert client.tenant == "t-1"
    assert client.fhir_servers == (FHIR_SERVER,)
    assert client.kid == key.kid


def test_authorization_header_must_be_bearer(tmp_path, jwks_server, es384):
    verifier = make_verifier(tmp_path)
    token = mint_token(es384, aud=AUD)
    with pytest.raises(AuthError) as missing:
        verifier.verify_authorization(None, AUD)
    assert missing.value.reason == "missing_authorization"
    with pytest.raises(AuthError) as basic:
        verifier.verify_authorization(f"Basic {token}", AUD)
    assert basic.value.reason == "not_bearer"
    assert verifier.verify_authorization(f"Bearer {token}", AUD).iss == ISS


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b", "a.b.c", "x" * 20000, "eyJhbGciOiJFUzM4NCJ9.bm90IGpzb24.c2ln"]
)
def test_malformed_tokens(tmp_path, jwks_server, token):
    assert reason(make_verifier(tmp_path), token) == "malformed"


def test_alg_none_is_rejected(tmp_path, jwks_server, es384):
    token = unsigned({"alg": "none", "typ": "JWT", "kid": es384.kid}, claims()) + "."
    assert reason(make_verifier(tmp_path), token) == "alg"


def test_hs256_signed_with_the_public_key_is_rejected(tmp_path, jwks_server, rs384):
    # The classic algorithm-confusion attack: HMAC keyed with the (public) PEM of the client's RSA key.
    pem = rs384.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = unsigned({"alg": "HS256", "typ": "JWT", "kid": rs384.kid}, claims())
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    assert reason(make_verifier(tmp_path), f"{signing_input}.{b64(signature)}") == "alg"


def test_algorithms_outside_the_allow_list_are_rejected(tmp_path, jwks_server):
    es256 = make_keypair("ES256")
    assert reason(make_verifier(tmp_path), mint_token(es256, aud=AUD)) == "alg"


def test_typ_and_kid_are_required(tmp_path, jwks_server, es384):
    verifier = make_verifier(tmp_path)
    assert reason(verifier, mint_token(es384, aud=AUD, headers={"typ": "at+jwt"})) == "typ"
    no_kid = unsigned({"alg": "ES384", "typ": "JWT"}, claims()) + ".c2ln"
    assert reason(verifier, no_kid) == "kid_missing"


def test_wrong_signature(tmp_path, jwks_server, es384):
    impostor = make_keypair("ES384", kid=es384.kid)  # same kid, different private key
    assert reason(make_verifier(tmp_path), mint_token(impostor, aud=AUD)) == "signature"


def test_tampered_payload_fails_the_signature(tmp_path, jwks_server, es384):
    header, _, signature = mint_token(es384, aud=AUD).split(".")
    forged = b64(json.dumps(claims(tenant="other")).encode())
    assert reason(make_verifier(tmp_path), f"{header}.{forged}.{signature}") == "signature"


def test_unknown_issuer(tmp_path, jwks_server, es384):
    assert reason(make_verifier(tmp_path), mint_token(es384, iss="https://evil.example", aud=AUD)) == "iss"


def test_jku_outside_the_clients_list_is_rejected_without_fetching(tmp_path, jwks_server, es384):
    token = mint_token(es384, aud=AUD, headers={"jku": "https://evil.example/jwks.json"})
    assert reason(make_verifier(tmp_path), token) == "jku"
    assert [call.request.url for call in jwks_server.calls] == []


def test_listed_jku_is_used(tmp_path, jwks_server, es384):
    token = mint_token(es384, aud=AUD, headers={"jku": JWKS_URL})
    assert make_verifier(tmp_path).verify(token, AUD).iss == ISS
    assert [call.request.url for call in jwks_server.calls] == [JWKS_URL]


def test_wrong_audience_another_services_url(tmp_path, jwks_server, es384):
    assert reason(make_verifier(tmp_path), mint_token(es384, aud=OTHER_AUD)) == "aud"


def test_audience_may_be_a_list(tmp_path, jwks_server, es384):
    assert make_verifier(tmp_path).verify(mint_token(es384, aud=[OTHER_AUD, AUD]), AUD).iss == ISS


def test_expired(tmp_path, jwks_server, es384):
    now = int(time.time())
    assert reason(make_verifier(tmp_path), mint_token(es384, aud=AUD, iat=now - 400, exp=now - 100)) == "exp"


def test_leeway_tolerates_small_clock_skew(tmp_path, jwks_server, es384):
    now = int(time.time())
    token = mint_token(es384, aud=AUD, iat=now + 10, exp=now + 300)
    assert make_verifier(tmp_path).verify(token, AUD).iss == ISS


def test_issued_in_the_future(tmp_path, jwks_server, es384):
    now = int(time.time())
    assert reason(make_verifier(tmp_path), mint_token(es384, aud=AUD, iat=now + 600, exp=now + 900)) == "iat"


def test_not_before_in_the_future(tmp_path, jwks_server, es384):
    now = int(time.time())
    assert reason(make_verifier(tmp_path), mint_token(es384, aud=AUD, nbf=now + 600)) == "nbf"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_times_are_rejected(tmp_path, jwks_server, es384, claim, value):
    # json.dumps writes NaN / Infinity, and PyJWT's json.loads reads them back as floats.
    token = mint_token(es384, aud=AUD, **{claim: value})
    assert reason(make_verifier(tmp_path), token) == claim


def test_lifetime_longer_than_allowed(tmp_path, jwks_server, es384):
    assert reason(make_verifier(tmp_path), mint_token(es384, aud=AUD, lifetime=7200)) == "lifetime"


@pytest.mark.parametrize("missing", ["exp", "iat", "jti"])
def test_required_claims(tmp_path, jwks_server, es384, missing):
    expected = {"exp": "exp", "iat": "iat", "jti": "jti_missing"}[missing]
    assert reason(make_verifier(tmp_path), mint_token(es384, aud=AUD, **{missing: None})) == expected


def test_replayed_jti(tmp_path, jwks_server, es384):
    verifier = make_verifier(tmp_path)
    token = mint_token(es384, aud=AUD)
    verifier.verify(token, AUD)
    assert reason(verifier, token) == "replay"
    # The same jti from another token of the same client is a replay too.
    assert reason(verifier, mint_token(es384, aud=AUD, jti=json.loads(_payload(token))["jti"])) == "replay"


def test_a_rejected_token_does_not_use_up_its_jti(tmp_path, jwks_server, es384):
    verifier = make_verifier(tmp_path)
    token = mint_token(es384, aud=AUD)
    assert reason(verifier, token, OTHER_AUD) == "aud"
    assert verifier.verify(token, AUD).iss == ISS


def test_unknown_kid_after_one_refresh(tmp_path, jwks_server, es384):
    verifier = make_verifier(tmp_path)
    stranger = make_keypair("ES384")
    assert reason(verifier, mint_token(stranger, aud=AUD)) == "unknown_kid"
    assert len(jwks_server.calls) == 1  # first fetch, then no second fetch within the minute
    assert reason(verifier, mint_token(stranger, aud=AUD)) == "unknown_kid"
    assert len(jwks_server.calls) == 1


def test_key_of_another_type_is_not_used(tmp_path, jwks_server, es384, rs384):
    token = mint_token(rs384, aud=AUD, kid=es384.kid)  # RS384 token pointing at the EC key
    assert reason(make_verifier(tmp_path), token) == "key_mismatch"


def test_tenant(tmp_path, jwks_server, es384):
    verifier = make_verifier(tmp_path, tenants=["org-1", "org-2"])
    assert verifier.verify(mint_token(es384, aud=AUD, tenant="org-2"), AUD).tenant == "org-2"
    assert reason(verifier, mint_token(es384, aud=AUD, tenant="org-3")) == "tenant"
    assert reason(verifier, mint_token(es384, aud=AUD)) == "tenant"


def test_inline_keys_need_no_fetch(tmp_path, es384):
    with responses.RequestsMock() as mock:  # any request would fail the test
        verifier = make_verifier(tmp_path, jwks_url=None, jwks=jwks_of(es384))
        assert verifier.verify(mint_token(es384, aud=AUD), AUD).iss == ISS
        assert len(mock.calls) == 0


def test_auth_error_never_carries_the_token(tmp_path, jwks_server, es384):
    token = mint_token(es384, aud=OTHER_AUD)
    with pytest.raises(AuthError) as info:
        make_verifier(tmp_path).verify(token, AUD)
    rendered = f"{info.value!s} {info.value!r} {vars(info.value)}"
    assert token not in rendered
    assert token.split(".")[2] not in rendered
    assert info.value.iss == ISS and info.value.kid == es384.kid and info.value.jti


def _payload(token: str) -> str:
    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()


def test_keys_on_file_are_used_before_fetching_the_listed_jku(tmp_path, es384):
    # The sandbox's set-up: tokens carry jku; a local copy of its key set avoids the network.
    with responses.RequestsMock() as mock:
        verifier = make_verifier(tmp_path, jwks=jwks_of(es384))
        token = mint_token(es384, aud=AUD, headers={"jku": JWKS_URL})
        assert verifier.verify(token, AUD).kid == es384.kid
        assert len(mock.calls) == 0
