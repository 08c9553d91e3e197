"""Verify the JWT a CDS client (EHR) sends with every call (CDS Hooks 2.0.1, "Trusting CDS Clients").

Checks run in a fixed order and the first failure names itself (``AuthError.reason``); the caller logs
that reason with iss, kid and jti and answers 401 without details. The token itself is never logged,
stored or put in an exception message. Signature verification is PyJWT's; this module only picks the
key and compares claims.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.exceptions import PyJWTError

from cds_service.security.config import DEFAULT_ALGORITHMS, TrustedClient
from cds_service.security.jwks import JwksCache
from cds_service.security.replay import MemoryReplayCache, ReplayCache

log = logging.getLogger("cds_service.security.jwt")

# What each algorithm needs from the key (RFC 7518 §3.4: ES256 on P-256, ES384 on P-384).
_KEY_SHAPE = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "PS384": ("RSA", None),
}
MAX_TOKEN_CHARS = 16 * 1024

# Signature only: the claims are compared below, each with its own failure reason.
_SIGNATURE_ONLY = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "enforce_minimum_key_length": True,
}


class AuthError(Exception):
    """A token failed ``reason``. Carries iss/kid/jti for the log line, never the token."""

    def __init__(self, reason: str, *, iss: Any = None, kid: Any = None, jti: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.iss = iss
        self.kid = kid
        self.jti = jti


@dataclass(frozen=True)
class CdsClient:
    """The authenticated caller, put on ``flask.g.cds_client``."""

    iss: str
    tenant: str | None
    fhir_servers: tuple[str, ...]
    jti: str
    kid: str
    name: str | None = None


class JwtVerifier:
    def __init__(
        self,
        clients: Iterable[TrustedClient],
        *,
        jwks_cache: JwksCache | None = None,
        replay_cache: ReplayCache | None = None,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: float = 30.0,
        max_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clients = {client.iss: client for client in clients}
        self.jwks = jwks_cache or JwksCache()
        self.replay = replay_cache or MemoryReplayCache(clock=clock)
        self.algorithms = frozenset(algorithms) & frozenset(_KEY_SHAPE)
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self._clock = clock

    def verify_authorization(self, authorization: str | None, audience: str) -> CdsClient:
        """Verify an ``Authorization`` header value for a call to the endpoint URL ``audience``."""
        if not authorization:
            raise AuthError("missing_authorization")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("not_bearer")
        return self.verify(token.strip(), audience)

    def verify(self, token: str, audience: str) -> CdsClient:
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
            raise AuthError("malformed")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except (PyJWTError, ValueError):
            raise AuthError("malformed") from None
        kid, iss, jti = header.get("kid"), claims.get("iss"), claims.get("jti")
        ids = {"iss": printable(iss), "kid": printable(kid), "jti": printable(jti)}

        # 1. Header: typ, alg allow-list (never none/HMAC), kid.
        if not isinstance(header.get("typ"), str) or header["typ"].upper() != "JWT":
            raise AuthError("typ", **ids)
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise AuthError("alg", **ids)
        if not isinstance(kid, str) or not kid:
            raise AuthError("kid_missing", **ids)
        # 2. Issuer on the trusted list.
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise AuthError("iss", **ids)
        # 3. jku, if sent, must be one of this client's key set URLs: never fetch anything else.
        jku = header.get("jku")
        if jku is not None and (not isinstance(jku, str) or jku not in client.jwks_urls):
            raise AuthError("jku", **ids)
        # 4. Signature with the key whose kid matches.
        jwk = self._find_key(client, kid, jku)
        if jwk is None:
            raise AuthError("unknown_kid", **ids)
        if not _key_fits(jwk, alg):
            raise AuthError("key_mismatch", **ids)
        try:
            key = jwt.PyJWK(dict(jwk), algorithm=alg)
            verified = jwt.decode(token, key=key, algorithms=[alg], options=_SIGNATURE_ONLY)  # type: ignore[arg-type]
        except PyJWTError:
            raise AuthError("signature", **ids) from None
        # 5. Claims.
        now = self._clock()
        self._check_claims(verified, client, audience, now, ids)
        # 6. Replay, last: a token that failed another check must not use up its jti.
        # The cache answers even when its database is down (a local fallback): never fail shut here.
        fresh = self.replay.check_and_store(iss, jti, float(verified["exp"]) + self.leeway)
        if not fresh:
            raise AuthError("replay", **ids)
        tenant = verified.get("tenant")
        return CdsClient(
            iss=client.iss,
            tenant=tenant if isinstance(tenant, str) else None,
            fhir_servers=client.fhir_servers,
            jti=jti,
            kid=kid,
            name=client.name,
        )

    def _find_key(self, client: TrustedClient, kid: str, jku: str | None) -> Mapping[str, Any] | None:
        # Keys on file first (no network); then the listed jku, or every listed key set URL.
        for key in client.static_keys:
            if key.get("kid") == kid:
                return key
        for url in (jku,) if jku is not None else client.jwks_urls:
            key = self.jwks.get_key(url, kid)
            if key is not None:
                return key
        return None

    def _check_claims(
        self, claims: Mapping[str, Any], client: TrustedClient, audience: str, now: float, ids: dict[str, str]
    ) -> None:
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if audience not in audiences:
            raise AuthError("aud", **ids)
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", None)
        if not _is_number(exp) or exp <= now - self.leeway:
            raise AuthError("exp", **ids)
        if not _is_number(iat) or iat > now + self.leeway:
            raise AuthError("iat", **ids)
        if exp - iat > self.max_lifetime:
            raise AuthError("lifetime", **ids)
        if nbf is not None and (not _is_number(nbf) or nbf > now + self.leeway):
            raise AuthError("nbf", **ids)
        if client.tenants and claims.get("tenant") not in client.tenants:
            raise AuthError("tenant", **ids)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti.strip():
            raise AuthError("jti_missing", **ids)


def _key_fits(jwk: Mapping[str, Any], alg: str) -> bool:
    if jwk.get("alg") not in (None, alg):
        return False
    kty, crv = _KEY_SHAPE[alg]
    return jwk.get("kty") == kty and (crv is None or jwk.get("crv") == crv)


def _is_number(value: Any) -> bool:
    # PyJWT decodes with Python's json, which accepts NaN and Infinity; every comparison with NaN is
    # false, so a NaN exp would never expire (and would never leave the replay cache).
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def printable(value: Any, limit: int = 120) -> str:
    """A log-safe rendering of an attacker-controlled header or claim value."""
    if value is None:
        return "-"
    text = value if isinstance(value, str) else json.dumps(value, default=str)[:limit]
    text = text[:limit]
    return "".join(ch if ch.isprintable() and ch != " " else "?" for ch in text)
