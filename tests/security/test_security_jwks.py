"""JWKS fetching and caching: HTTPS only, timeouts, no redirects, rate-limited refresh, key rotation.

The rotation tests use a real HTTPS server on 127.0.0.1 (self-signed certificate made here), the rest use
``responses``.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from helpers.security import (
    ISS,
    PUBLIC_BASE,
    client_entry,
    jwks_of,
    make_keypair,
    mint_token,
    write_trusted_clients,
)
from helpers.stuck_servers import self_signed_certificate

from cds_service.config import ConfigError
from cds_service.security.config import load_trusted_clients
from cds_service.security.jwks import MAX_JWKS_BYTES, JwksCache, JwksFetchError
from cds_service.security.jwt_verifier import AuthError, JwtVerifier

AUD = f"{PUBLIC_BASE}/cds-services"
URL = "https://keys.example.org/jwks.json"
LOOPBACK = ipaddress.ip_address("127.0.0.1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- a real HTTPS JWKS endpoint on loopback -------------------------------------------------------


class JwksServer:
    def __init__(self, cert_path: Path, key_path: Path) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                body = json.dumps(server.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def https_jwks(tmp_path: Path) -> Iterator[tuple[JwksServer, requests.Session]]:
    cert_path, key_path = self_signed_certificate(tmp_path)
    server = JwksServer(cert_path, key_path)
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment overrides verify
    session.verify = str(cert_path)  # trust exactly this certificate
    try:
        yield server, session
    finally:
        server.stop()


def _verifier(tmp_path: Path, url: str, cache: JwksCache) -> JwtVerifier:
    path = write_trusted_clients(tmp_path, [client_entry(ISS, jwks_url=url)])
    return JwtVerifier(load_trusted_clients(path), jwks_cache=cache)


def _rejects(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthError) as info:
        verifier.verify(token, AUD)
    return info.value.reason


def test_rotation_new_kid_picked_up_old_one_rejected_after_removal(tmp_path, https_jwks):
    server, session = https_jwks
    old, new = make_keypair("ES384"), make_keypair("RS384")
    clock = FakeClock()
    verifier = _verifier(tmp_path, server.url, JwksCache(session=session, clock=clock))

    server.jwks = jwks_of(old)
    assert verifier.verify(mint_token(old, aud=AUD), AUD).kid == old.kid
    assert server.hits == 1

    # The EHR publishes the new key beside the old one and starts signing with it.
    server.jwks = jwks_of(old, new)
    clock.now += 61
    assert verifier.verify(mint_token(new, aud=AUD), AUD).kid == new.kid
    assert server.hits == 2
    assert verifier.verify(mint_token(old, aud=AUD), AUD).kid == old.kid  # both valid during the overlap

    # The EHR removes the old key; once the cached set is refreshed, old tokens fail.
    server.jwks = jwks_of(new)
    clock.now += 3600
    assert _rejects(verifier, mint_token(old, aud=AUD)) == "unknown_kid"
    assert server.hits == 3
    assert verifier.verify(mint_token(new, aud=AUD), AUD).kid == new.kid


def test_rotation_without_overlap_drops_the_old_key_at_the_refresh(tmp_path, https_jwks):
    server, session = https_jwks
    old, new = make_keypair("ES384"), make_keypair("ES384")
    clock = FakeClock()
    verifier = _verifier(tmp_path, server.url, JwksCache(session=session, clock=clock))
    server.jwks = jwks_of(old)
    verifier.verify(mint_token(old, aud=AUD), AUD)
    server.jwks = jwks_of(new)
    clock.now += 61
    assert verifier.verify(mint_token(new, aud=AUD), AUD).kid == new.kid
    assert _rejects(verifier, mint_token(old, aud=AUD)) == "unknown_kid"


def test_unknown_kid_refreshes_at_most_once_a_minute(tmp_path, https_jwks):
    server, session = https_jwks
    known = make_keypair("ES384")
    server.jwks = jwks_of(known)
    clock = FakeClock()
    verifier = _verifier(tmp_path, server.url, JwksCache(session=session, clock=clock))
    verifier.verify(mint_token(known, aud=AUD), AUD)
    for _ in range(20):
        assert _rejects(verifier, mint_token(make_keypair("ES384"), aud=AUD)) == "unknown_kid"
    assert server.hits == 1  # a flood of made-up kids fetches nothing within the minute
    clock.now += 59
    _rejects(verifier, mint_token(make_keypair("ES384"), aud=AUD))
    assert server.hits == 1
    clock.now += 2
    _rejects(verifier, mint_token(make_keypair("ES384"), aud=AUD))
    assert server.hits == 2


def test_untrusted_certificate_is_refused(https_jwks):
    server, _ = https_jwks
    server.jwks = jwks_of(make_keypair("ES384"))
    with pytest.raises(JwksFetchError):
        JwksCache().fetch(server.url)  # default trust store: the self-signed certificate is not in it
    assert server.hits == 0


# --- transport rules, with responses --------------------------------------------------------------


@responses.activate
def test_fetch_uses_a_timeout():
    responses.get(URL, json=jwks_of(make_keypair("ES384")))
    JwksCache(timeout=1.5).fetch(URL)
    call = responses.calls[0]
    assert call.request.req_kwargs["timeout"] == (1.5, 1.5)


@responses.activate
def test_redirect_is_not_followed():
    responses.get(URL, status=302, headers={"Location": "https://elsewhere.example/jwks.json"})
    with pytest.raises(JwksFetchError, match="302"):
        JwksCache().fetch(URL)
    assert len(responses.calls) == 1


def test_only_https_is_fetched():
    with responses.RequestsMock() as mock, pytest.raises(JwksFetchError, match="https"):
        JwksCache().fetch("http://keys.example.org/jwks.json")
    assert len(mock.calls) == 0


@responses.activate
def test_timeout_keeps_the_keys_already_known():
    key = make_keypair("ES384")
    clock = FakeClock()
    cache = JwksCache(clock=clock)
    responses.get(URL, json=jwks_of(key))
    assert cache.get_key(URL, key.kid) is not None
    responses.replace(responses.GET, URL, body=requests.exceptions.ConnectTimeout())
    clock.now += 4000  # cache expired, refresh fails
    assert cache.get_key(URL, key.kid) is not None
    assert len(responses.calls) == 2


@responses.activate
def test_oversized_or_broken_key_sets_are_refused():
    responses.get(URL, body=b"{" + b" " * (MAX_JWKS_BYTES + 10) + b"}")
    with pytest.raises(JwksFetchError, match="256"):
        JwksCache().fetch(URL)
    responses.replace(responses.GET, URL, body=b"not json")
    with pytest.raises(JwksFetchError, match="JSON"):
        JwksCache().fetch(URL)
    responses.replace(responses.GET, URL, json={"no": "keys"})
    with pytest.raises(JwksFetchError, match="JWK Set"):
        JwksCache().fetch(URL)


@responses.activate
def test_symmetric_private_and_kidless_keys_are_skipped():
    good = make_keypair("ES384")
    private = dict(good.public_jwk, kid="with-d", d="secret")
    responses.get(
        URL,
        json={
            "keys": [{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}, private, {"kty": "EC"}, good.public_jwk]
        },
    )
    assert list(JwksCache().fetch(URL)) == [good.kid]


def test_config_refuses_http_key_set_urls(tmp_path):
    path = write_trusted_clients(tmp_path, [client_entry(ISS, jwks_url="http://keys.example.org/jwks.json")])
    with pytest.raises(ConfigError, match="https"):
        load_trusted_clients(path)


# --- isolation: a stuck key-set endpoint holds no lock and only its own requests ----------------------


@pytest.mark.parametrize("trickle", [True, False], ids=["trickling-status-line", "silent-handshake"])
def test_a_stuck_key_set_endpoint_does_not_stall_another_clients_key_set(https_jwks, tmp_path, trickle):
    from helpers.stuck_servers import StuckServer

    server, session = https_jwks
    key = make_keypair("ES384")
    server.jwks = jwks_of(key)
    # Each wait may take 2 s; the stuck endpoint sends a byte a second, so only the deadline ends it.
    cache = JwksCache(session=session, timeout=2.0)
    tls = None
    if trickle:  # a completed handshake, then the status line and headers a byte a second
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")  # the https_jwks certificate
    with StuckServer(trickle=trickle, tls=tls) as stuck:
        stuck_url = f"https://127.0.0.1:{stuck.port}/jwks.json"
        answers: dict[str, object] = {}
        first = threading.Thread(target=lambda: answers.update(first=cache.get_key(stuck_url, "k")))
        first.start()
        assert stuck.wait_for(lambda s: s.accepted == 1)
        # The same URL meanwhile: waits for the fetch under way (single flight), fetches nothing more.
        second = threading.Thread(target=lambda: answers.update(second=cache.get_key(stuck_url, "k")))
        second.start()
        # Another client's key set is fetched and used while the stuck fetch is still in flight.
        assert cache.get_key(server.url, key.kid) is not None
        assert stuck.closed_by_client == 0
        first.join()
        second.join()
        assert answers == {"first": None, "second": None}
        assert stuck.wait_for(lambda s: s.closed_by_client == 1) and stuck.accepted == 1
