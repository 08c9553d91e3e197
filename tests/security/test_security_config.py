"""Trusted-clients file, environment variables, FHIR base URL normalisation, replay caches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.security import FHIR_SERVER, ISS, client_entry, jwks_of, make_keypair, write_trusted_clients
from sqlalchemy import create_engine, func, select

from cds_service.config import ConfigError, Settings
from cds_service.security.config import DEFAULT_ALGORITHMS, SecuritySettings, load_trusted_clients
from cds_service.security.fhir_allowlist import fhir_server_problem, normalize_base_url
from cds_service.security.replay import DatabaseReplayCache, MemoryReplayCache, jwt_replay, make_replay_cache
from cds_service.storage.engine import make_engine
from cds_service.storage.migrate import upgrade

pytest_plugins = ["conftest_postgres"]  # database_url: SQLite, and PostgreSQL with CDS_TEST_POSTGRES=1

SANDBOX_JWKS = Path(__file__).resolve().parents[3] / "shared/cds-hooks/cds-hooks-sandbox/jwks.json"


# --- trusted-clients file -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_yaml_and_json_files_load(tmp_path, fmt):
    key = make_keypair("ES384")
    entries = [
        client_entry(ISS, jwks_url="https://ehr.example.org/jwks", tenants=["t1"]),
        client_entry(
            "https://other.example", jwks=jwks_of(key), fhir_servers=["HTTPS://Other.Example:443/r4/"]
        ),
    ]
    clients = load_trusted_clients(write_trusted_clients(tmp_path, entries, fmt=fmt))
    assert [c.iss for c in clients] == [ISS, "https://other.example"]
    assert clients[0].jwks_urls == ("https://ehr.example.org/jwks",)
    assert clients[0].tenants == ("t1",)
    assert clients[0].fhir_servers == (FHIR_SERVER,)
    assert clients[1].static_keys[0]["kid"] == key.kid
    assert clients[1].fhir_servers == ("https://other.example/r4",)


def test_jwks_file_relative_to_the_clients_file(tmp_path):
    key = make_keypair("RS384")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ehr.json").write_text(json.dumps(jwks_of(key)))
    clients = load_trusted_clients(
        write_trusted_clients(tmp_path, [client_entry(ISS, jwks_file="keys/ehr.json")])
    )
    assert clients[0].static_keys[0]["kid"] == key.kid


def test_the_sandbox_key_set_loads(tmp_path):
    if not SANDBOX_JWKS.is_file():
        pytest.skip("shared sandbox JWKS not available")
    path = write_trusted_clients(
        tmp_path, [client_entry("https://sandbox.cds-hooks.org", jwks_file=str(SANDBOX_JWKS))]
    )
    (client,) = load_trusted_clients(path)
    assert [k["kid"] for k in client.static_keys] == ["44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("clients: []", "non-empty top-level 'clients:'"),
        ("[1, 2]", "non-empty top-level 'clients:'"),
        ("clients: [{iss: x}", "not valid YAML/JSON"),
        ("clients: [{fhir_servers: []}]", "'iss'"),
        ("clients: [{iss: x, fhir_servers: []}]", "jwks_url, jwks or jwks_file"),
        ("clients: [{iss: x, jwks_url: 'https://k', jku: 'https://k'}]", "unknown field"),
        ("clients: [{iss: x, jwks_url: 'https://k'}, {iss: x, jwks_url: 'https://k'}]", "listed twice"),
        ("clients: [{iss: x, jwks_url: 'https://k', fhir_servers: ['gopher://h']}]", "http"),
        ("clients: [{iss: x, jwks: {keys: [{kty: oct, kid: a, k: AAAA}]}}]", "only EC and RSA"),
        ("clients: [{iss: x, jwks: {keys: [{kty: EC, kid: a, d: AAAA}]}}]", "private part"),
        ("clients: [{iss: x, jwks: {keys: [{kty: EC}]}}]", "no 'kid'"),
        ("clients: [{iss: x, jwks_file: missing.json}]", "cannot read jwks_file"),
    ],
)
def test_broken_files_give_one_clear_line(tmp_path, content, message):
    path = tmp_path / "clients.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_trusted_clients(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_settings_defaults_are_the_safe_ones():
    sec = SecuritySettings.from_settings(Settings.from_env({}))
    assert sec.auth_enabled is True
    assert sec.algorithms == DEFAULT_ALGORITHMS == ("ES384", "RS384")
    assert sec.allow_http_fhir is False
    assert sec.fhir_allowlist == ()
    assert sec.public_base_url is None


def test_settings_from_env():
    sec = SecuritySettings.from_settings(
        Settings.from_env(
            {
                "CDS_AUTH": "off",
                "CDS_PUBLIC_BASE_URL": "https://cds.example.org/base/",
                "CDS_JWT_ALGORITHMS": "ES256, PS384",
                "CDS_JWT_LEEWAY": "5",
                "CDS_FHIR_SERVER_ALLOWLIST": "https://a.example/fhir/, https://B.example:443/r4",
                "CDS_ALLOW_HTTP_FHIR": "true",
            }
        )
    )
    assert sec.auth_enabled is False
    assert sec.public_base_url == "https://cds.example.org/base"
    assert sec.algorithms == ("ES256", "PS384")
    assert sec.leeway == 5
    assert sec.fhir_allowlist == ("https://a.example/fhir", "https://b.example/r4")
    assert sec.allow_http_fhir is True


# --- FHIR base URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("https://EHR.Example.org/fhir/R4/", "https://ehr.example.org/fhir/R4"),
        ("https://ehr.example.org:443/fhir", "https://ehr.example.org/fhir"),
        ("http://ehr.example.org:80/fhir", "http://ehr.example.org/fhir"),
        ("https://ehr.example.org:8443/fhir", "https://ehr.example.org:8443/fhir"),
        ("https://[::1]:8443/fhir", "https://[::1]:8443/fhir"),
        ("HTTPS://ehr.example.org", "https://ehr.example.org"),
    ],
)
def test_normalise(raw, normalised):
    assert normalize_base_url(raw) == normalised


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "ehr.example.org/fhir",
        "ftp://ehr/fhir",
        "https://u:p@ehr/fhir",
        "https://ehr/fhir?x=1",
        "https:///x",
    ],
)
def test_normalise_refuses(raw):
    with pytest.raises(ValueError):
        normalize_base_url(raw)


def test_fhir_server_problem_messages_never_repeat_the_url():
    secret = "https://ehr.example.org/fhir?access_token=abc123"
    problem = fhir_server_problem(secret, [FHIR_SERVER], allow_http=False)
    assert problem and "abc123" not in problem
    assert fhir_server_problem(FHIR_SERVER + "/", [FHIR_SERVER], allow_http=False) is None
    assert fhir_server_problem("https://x.example", None, allow_http=False) is None
    assert fhir_server_problem("http://x.example", None, allow_http=False) == "fhirServer must use https"
    assert fhir_server_problem("http://x.example", None, allow_http=True) is None
    assert fhir_server_problem(42, None, allow_http=True) == "fhirServer must be a string"


# --- replay caches ------------------------------------------------------------------------------------


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_replay_cache_forgets_after_expiry():
    clock = Clock()
    cache = MemoryReplayCache(clock=clock, purge_every=1)
    assert cache.check_and_store(ISS, "a", 1100) is True
    assert cache.check_and_store(ISS, "a", 1100) is False
    assert cache.check_and_store("https://other", "a", 1100) is True  # jti is per issuer
    clock.now = 1101
    assert cache.check_and_store(ISS, "b", 1200) is True  # purge runs
    assert len(cache) == 1
    assert cache.check_and_store(ISS, "a", 1200) is True  # the old token has expired anyway


def test_database_replay_cache_is_shared_between_instances(database_url):
    url = database_url
    upgrade(make_engine(url))  # the table comes from migration 0002
    clock = Clock()
    first = DatabaseReplayCache(create_engine(url), clock=clock, purge_every=1)
    second = DatabaseReplayCache(create_engine(url), clock=clock, purge_every=1)
    assert first.check_and_store(ISS, "jti-1", 1100) is True
    assert second.check_and_store(ISS, "jti-1", 1100) is False
    clock.now = 1200
    assert second.check_and_store(ISS, "jti-1", 1300) is True  # expired row replaced
    with create_engine(url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(jwt_replay)).scalar_one() == 1
        stored = conn.execute(select(jwt_replay.c.key)).scalar_one()
    assert "jti-1" not in stored and len(stored) == 64


def test_replay_cache_choice(tmp_path):
    # auto = the configured database whatever its kind (SQLite is shared by the workers of one host).
    assert isinstance(make_replay_cache("auto", f"sqlite:///{tmp_path / 'x.db'}"), DatabaseReplayCache)
    assert isinstance(make_replay_cache("database", f"sqlite:///{tmp_path / 'x.db'}"), DatabaseReplayCache)
    assert isinstance(make_replay_cache("memory", f"sqlite:///{tmp_path / 'x.db'}"), MemoryReplayCache)
    with pytest.raises(ConfigError, match="CDS_DATABASE_URL"):
        make_replay_cache("database", None)


def test_auto_shares_the_cache_through_every_database(database_url):
    upgrade(make_engine(database_url))
    cache = make_replay_cache("auto", database_url)
    assert isinstance(cache, DatabaseReplayCache)
    assert cache.check_and_store(ISS, "once", 4e9) is True
    assert cache.check_and_store(ISS, "once", 4e9) is False
    assert cache.status() == {"mode": "database", "degraded": False}
