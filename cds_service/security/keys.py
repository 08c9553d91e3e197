"""Client signing keys, one story for every command: a private key file in PEM or JWK, a kid by RFC 7638.

``cds-service keys new`` writes a private PEM and prints its public JWKS entry; ``mint-token`` and
``simulate`` read that same file (or a private JWK, as the CDS Hooks sandbox publishes one). The algorithm
follows from the key: EC P-384 signs ES384, P-256 ES256, RSA RS384. These keys are for trying a deployment;
an EHR's real key never leaves the EHR.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

# Curves CDS Hooks clients sign with, and the JWS algorithm each implies.
_EC_ALGORITHMS = {"secp384r1": "ES384", "secp256r1": "ES256"}
NEW_KEY_ALGORITHMS = ("ES384", "RS384")


class KeyFileError(ValueError):
    """The key file cannot be used; the message names the file and says why, in one line."""


@dataclass(frozen=True)
class SigningKey:
    private_key: Any
    alg: str
    kid: str
    public_jwk: Mapping[str, Any]

    def jwks(self) -> dict[str, Any]:
        """The key set to publish (or paste into a trusted-clients file): the public half only."""
        return {"keys": [dict(self.public_jwk)]}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(public_jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint (SHA-256) of an EC or RSA public JWK."""
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}.get(str(public_jwk.get("kty")))
    if members is None:
        raise KeyFileError(f"cannot compute a thumbprint for a {public_jwk.get('kty')} key")
    canonical = json.dumps({m: public_jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def signing_key(private_key: Any, kid: str | None = None, origin: str = "the key") -> SigningKey:
    """Wrap a private key object: its algorithm, its public JWK and its kid (given, else the thumbprint)."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        alg = _EC_ALGORITHMS.get(private_key.curve.name)
        if alg is None:
            raise KeyFileError(
                f"{origin}: EC curve {private_key.curve.name} is not used by CDS Hooks (use P-384)"
            )
        public_jwk = json.loads(ECAlgorithm.to_jwk(private_key.public_key()))
    elif isinstance(private_key, rsa.RSAPrivateKey):
        alg = "RS384"
        public_jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    else:
        raise KeyFileError(f"{origin}: only EC (P-384) and RSA keys can sign CDS Hooks JWTs")
    kid = kid or jwk_thumbprint(public_jwk)
    public_jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return SigningKey(private_key=private_key, alg=alg, kid=kid, public_jwk=public_jwk)


def _from_jwk(text: str, origin: str) -> tuple[Any, str | None]:
    try:
        jwk = json.loads(text)
    except ValueError as exc:
        raise KeyFileError(f"{origin} is neither a PEM private key nor a JWK (JSON)") from exc
    if isinstance(jwk, Mapping) and isinstance(jwk.get("keys"), list) and len(jwk["keys"]) == 1:
        jwk = jwk["keys"][0]  # a one-key JWKS, as the sandbox publishes its key
    if not isinstance(jwk, Mapping) or "d" not in jwk:
        raise KeyFileError(
            f"{origin} holds a public key only: a private key (PEM, or a JWK with 'd') is needed"
        )
    loader = {"EC": ECAlgorithm, "RSA": RSAAlgorithm}.get(str(jwk.get("kty")))
    if loader is None:
        raise KeyFileError(f"{origin}: only EC (P-384) and RSA keys can sign CDS Hooks JWTs")
    try:
        private_key = loader.from_jwk(json.dumps(jwk))
    except Exception as exc:  # PyJWT raises InvalidKeyError, ValueError or KeyError for broken members
        raise KeyFileError(f"{origin} is not a usable {jwk.get('kty')} private JWK") from exc
    kid = jwk.get("kid")
    return private_key, kid if isinstance(kid, str) and kid else None


def load_signing_key(path: Path, kid: str | None = None) -> SigningKey:
    """A private key from ``path``, PEM or JWK; ``kid`` overrides the JWK's kid and the thumbprint."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key {path}: {exc.strerror or exc}") from exc
    origin = str(path)
    if raw.lstrip().startswith(b"-----BEGIN"):
        try:
            private_key = serialization.load_pem_private_key(raw, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{origin} is not an unencrypted PEM private key") from exc
        return signing_key(private_key, kid, origin)
    private_key, jwk_kid = _from_jwk(raw.decode("utf-8", errors="replace"), origin)
    return signing_key(private_key, kid or jwk_kid, origin)


def generate_signing_key(alg: str = "ES384", kid: str | None = None) -> SigningKey:
    if alg == "ES384":
        return signing_key(ec.generate_private_key(ec.SECP384R1()), kid)
    if alg == "RS384":
        return signing_key(rsa.generate_private_key(public_exponent=65537, key_size=3072), kid)
    raise KeyFileError(f"--alg must be one of {', '.join(NEW_KEY_ALGORITHMS)}")


def write_private_pem(key: SigningKey, path: Path, *, overwrite: bool = False) -> None:
    """PKCS#8 PEM, created 0600 (never readable by others, not even for a moment)."""
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} exists: choose another file, or --force to replace it") from exc
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
