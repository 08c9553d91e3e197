"""Security configuration: environment variables and the trusted-clients file.

The trusted-clients file (YAML or JSON) lists every CDS client (EHR) allowed to call the service::

    clients:
      - iss: https://ehr.example.org            # exact match with the JWT's iss
        jwks_url: https://ehr.example.org/jwks  # or a list; or `jwks:` inline; or `jwks_file:` path
        tenants: [org-1]                        # optional: the JWT's tenant must be one of these
        fhir_servers: [https://ehr.example.org/fhir/r4]
        report_all_clients: false               # true: may read GET /admin/report?client=all

A broken file stops the start with one line naming the problem (``ConfigError``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from cds_service.config import ConfigError, Settings, env_list, env_number
from cds_service.security.fhir_allowlist import normalize_base_url

# Asymmetric algorithms only: the spec forbids `none` and every HMAC algorithm.
SUPPORTED_ALGORITHMS = ("ES384", "RS384", "ES256", "RS256", "PS384")
DEFAULT_ALGORITHMS = ("ES384", "RS384")


@dataclass(frozen=True)
class TrustedClient:
    """One CDS client (EHR) allowed to call the service, as listed in the trusted-clients file."""

    iss: str
    jwks_urls: tuple[str, ...] = ()
    static_keys: tuple[Mapping[str, Any], ...] = ()  # from inline `jwks` or `jwks_file`
    tenants: tuple[str, ...] = ()
    fhir_servers: tuple[str, ...] = ()  # normalised base URLs
    name: str | None = None
    report_all_clients: bool = False  # may read every client's data in GET /admin/report?client=all


@dataclass(frozen=True)
class SecuritySettings:
    auth_enabled: bool = True
    trusted_clients_path: Path | None = None
    public_base_url: str | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway: float = 30.0
    max_token_lifetime: float = 3600.0
    jwks_timeout: float = 3.0
    jwks_cache_seconds: float = 3600.0
    jwks_refresh_interval: float = 60.0
    fhir_allowlist: tuple[str, ...] = ()
    allow_http_fhir: bool = False
    replay_cache: str = "auto"
    database_url: str | None = None
    hsts: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> SecuritySettings:
        env = settings.env
        algorithms = env_list(env, "CDS_JWT_ALGORITHMS") or DEFAULT_ALGORITHMS
        unsupported = [alg for alg in algorithms if alg not in SUPPORTED_ALGORITHMS]
        if unsupported:
            raise ConfigError(
                f"CDS_JWT_ALGORITHMS: {', '.join(unsupported)} not allowed "
                f"(choose from {', '.join(SUPPORTED_ALGORITHMS)})"
            )
        public_base_url = (env.get("CDS_PUBLIC_BASE_URL") or "").strip().rstrip("/") or None
        if public_base_url is not None:
            parts = urlsplit(public_base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise ConfigError(f"CDS_PUBLIC_BASE_URL must be an http(s) URL, got {public_base_url!r}")
        try:
            fhir_allowlist = tuple(
                normalize_base_url(url) for url in env_list(env, "CDS_FHIR_SERVER_ALLOWLIST")
            )
        except ValueError as exc:
            raise ConfigError(f"CDS_FHIR_SERVER_ALLOWLIST: {exc}") from exc
        replay_cache = (env.get("CDS_JWT_REPLAY_CACHE") or "auto").strip().lower()
        if replay_cache not in ("auto", "memory", "database"):
            raise ConfigError(f"CDS_JWT_REPLAY_CACHE must be auto, memory or database, got {replay_cache!r}")
        trusted = (env.get("CDS_TRUSTED_CLIENTS") or "").strip()
        return cls(
            auth_enabled=settings.flag("CDS_AUTH", True),
            trusted_clients_path=Path(trusted) if trusted else None,
            public_base_url=public_base_url,
            algorithms=algorithms,
            leeway=env_number(env, "CDS_JWT_LEEWAY", 30.0, maximum=300.0),
            max_token_lifetime=env_number(env, "CDS_JWT_MAX_LIFETIME", 3600.0, minimum=1.0),
            jwks_timeout=env_number(env, "CDS_JWKS_TIMEOUT", 3.0, minimum=0.1, maximum=30.0),
            jwks_cache_seconds=env_number(env, "CDS_JWKS_CACHE_SECONDS", 3600.0, minimum=60.0),
            jwks_refresh_interval=env_number(env, "CDS_JWKS_REFRESH_INTERVAL", 60.0, minimum=1.0),
            fhir_allowlist=fhir_allowlist,
            allow_http_fhir=settings.flag("CDS_ALLOW_HTTP_FHIR", False),
            replay_cache=replay_cache,
            database_url=(env.get("CDS_DATABASE_URL") or "").strip() or None,
            hsts=settings.flag("CDS_HSTS", True),
        )


def load_trusted_clients(path: Path) -> tuple[TrustedClient, ...]:
    """Read and check the trusted-clients file; raise ConfigError naming the first problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"CDS_TRUSTED_CLIENTS: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"CDS_TRUSTED_CLIENTS: {path} is not valid YAML/JSON: {_first_line(exc)}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("clients"), list) or not data["clients"]:
        raise ConfigError(f"CDS_TRUSTED_CLIENTS: {path} needs a non-empty top-level 'clients:' list")
    clients: list[TrustedClient] = []
    seen: set[str] = set()
    for index, entry in enumerate(data["clients"]):
        where = f"CDS_TRUSTED_CLIENTS: {path} clients[{index}]"
        client = _client(entry, where, base_dir=path.parent)
        if client.iss in seen:
            raise ConfigError(f"{where}: iss {client.iss!r} is listed twice")
        seen.add(client.iss)
        clients.append(client)
    return tuple(clients)


def _client(entry: Any, where: str, *, base_dir: Path) -> TrustedClient:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: each client must be a mapping")
    known = {
        "iss",
        "name",
        "jwks_url",
        "jwks_urls",
        "jwks",
        "jwks_file",
        "tenants",
        "fhir_servers",
        "report_all_clients",
    }
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    iss = entry.get("iss")
    if not isinstance(iss, str) or not iss.strip():
        raise ConfigError(f"{where}: 'iss' (the issuer string in the client's JWTs) is required")
    jwks_urls = _strings(entry.get("jwks_url"), where, "jwks_url") + _strings(
        entry.get("jwks_urls"), where, "jwks_urls"
    )
    for url in jwks_urls:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigError(f"{where}: jwks_url must be an https URL, got {url!r}")
    static_keys: list[Mapping[str, Any]] = []
    if entry.get("jwks") is not None:
        static_keys += _public_keys(entry["jwks"], f"{where} jwks")
    if entry.get("jwks_file") is not None:
        if not isinstance(entry["jwks_file"], str):
            raise ConfigError(f"{where}: jwks_file must be a path")
        key_path = Path(entry["jwks_file"])
        key_path = key_path if key_path.is_absolute() else base_dir / key_path
        try:
            jwks = json.loads(key_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{where}: cannot read jwks_file {key_path}: {_first_line(exc)}") from exc
        static_keys += _public_keys(jwks, f"{where} jwks_file {key_path}")
    if not jwks_urls and not static_keys:
        raise ConfigError(f"{where}: give the client's keys as jwks_url, jwks or jwks_file")
    try:
        fhir_servers = tuple(
            normalize_base_url(url) for url in _strings(entry.get("fhir_servers"), where, "fhir_servers")
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: fhir_servers: {exc}") from exc
    name = entry.get("name")
    report_all_clients = entry.get("report_all_clients", False)
    if not isinstance(report_all_clients, bool):
        raise ConfigError(f"{where}: report_all_clients must be true or false")
    return TrustedClient(
        iss=iss.strip(),
        jwks_urls=jwks_urls,
        static_keys=tuple(static_keys),
        tenants=_strings(entry.get("tenants"), where, "tenants"),
        fhir_servers=fhir_servers,
        name=str(name) if name is not None else None,
        report_all_clients=report_all_clients,
    )


def _strings(value: Any, where: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise ConfigError(f"{where}: {name} must be a string or a list of strings")
    return tuple(item.strip() for item in value)


def _public_keys(jwks: Any, where: str) -> list[Mapping[str, Any]]:
    """Check a JWK Set: asymmetric signing keys with a kid, and never a private part."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ConfigError(f"{where}: must be a JWK Set with a non-empty 'keys' list")
    keys = []
    for key in jwks["keys"]:
        problem = jwk_problem(key)
        if problem:
            raise ConfigError(f"{where}: {problem}")
        keys.append(dict(key))
    return keys


def jwk_problem(key: Any) -> str | None:
    """Why a JWK cannot verify client JWTs, or None when it can."""
    if not isinstance(key, dict):
        return "a key is not a JSON object"
    if not isinstance(key.get("kid"), str) or not key["kid"]:
        return "a key has no 'kid'"
    if key.get("kty") not in ("EC", "RSA"):
        return f"key {key['kid']!r} has kty {key.get('kty')!r}; only EC and RSA keys are accepted"
    if "d" in key:
        return f"key {key['kid']!r} contains a private part ('d'); publish the public key only"
    if key.get("use") not in (None, "sig"):
        return f"key {key['kid']!r} has use {key.get('use')!r}, not 'sig'"
    return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]
