"""Keys, tokens and trusted-clients files for tests (reusable by every test module).

key = make_keypair("ES384")
token = mint_token(key, iss=ISS, aud="https://cds.example.org/cds-services")
path = write_trusted_clients(tmp_path, [client_entry(ISS, jwks=jwks_of(key))])
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISS = "https://ehr.example.org"
PUBLIC_BASE = "https://cds.example.org"
FHIR_SERVER = "https://ehr.example.org/fhir/r4"
JWKS_URL = "https://ehr.example.org/.well-known/jwks.json"
SERVICE_IDS = ("amifampridine-order-select", "amifampridine-order-sign", "amifampridine-medication-prescribe")

_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}


@dataclass(frozen=True)
class KeyPair:
    alg: str
    kid: str
    private_key: Any
    public_jwk: dict[str, Any]


def make_keypair(alg: str = "ES384", kid: str | None = None) -> KeyPair:
    """A fresh key pair for ``alg`` (ES256/ES384 or RS256/RS384/PS384) with its public JWK."""
    if alg in _CURVES:
        private_key: Any = ec.generate_private_key(_CURVES[alg]())
        algorithm: Any = ECAlgorithm
    else:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        algorithm = RSAAlgorithm
    kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
    public_jwk = json.loads(algorithm.to_jwk(private_key.public_key()))
    public_jwk.update({"kid": kid, "use": "sig", "alg": alg})
    return KeyPair(alg=alg, kid=kid, private_key=private_key, public_jwk=public_jwk)


def jwks_of(*keys: KeyPair) -> dict[str, Any]:
    return {"keys": [key.public_jwk for key in keys]}


def mint_token(
    key: KeyPair,
    iss: str = ISS,
    aud: str | list[str] = f"{PUBLIC_BASE}/cds-services",
    *,
    kid: str | None = None,
    alg: str | None = None,
    headers: dict[str, Any] | None = None,
    lifetime: int = 300,
    **claims: Any,
) -> str:
    """A CDS Hooks client JWT. Claims given as None are left out; ``headers`` are added/overridden."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "iat": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not None}
    header = {"typ": "JWT", "kid": kid or key.kid}
    header.update(headers or {})
    return jwt.encode(payload, key.private_key, algorithm=alg or key.alg, headers=header)


def client_entry(
    iss: str = ISS,
    *,
    jwks: dict[str, Any] | None = None,
    jwks_url: str | list[str] | None = None,
    jwks_file: str | None = None,
    tenants: list[str] | None = None,
    fhir_servers: list[str] | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "iss": iss,
        "fhir_servers": fhir_servers if fhir_servers is not None else [FHIR_SERVER],
    }
    for name, value in (
        ("jwks", jwks),
        ("jwks_url", jwks_url),
        ("jwks_file", jwks_file),
        ("tenants", tenants),
    ):
        if value is not None:
            entry[name] = value
    return entry


def write_trusted_clients(tmp_path: Path, clients: list[dict[str, Any]], *, fmt: str = "yaml") -> Path:
    """Write a trusted-clients file (YAML or JSON) and return its path."""
    path = tmp_path / f"trusted-clients.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps({"clients": clients}, indent=2))
    else:
        import yaml

        path.write_text(yaml.safe_dump({"clients": clients}, sort_keys=False))
    return path


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
