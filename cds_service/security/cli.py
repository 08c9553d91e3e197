"""Subcommands ``trusted-clients``, ``keys new`` and ``mint-token`` of ``cds-service`` (see ``register_cli``).

    cds-service trusted-clients [FILE] [--fetch]   check the file; with --fetch, also each key set URL
    cds-service keys new --out client.pem          a test client key pair: private PEM (0600), JWKS on stdout
    cds-service mint-token --key client.pem --iss ISS --aud URL [--tenant T]
                                                   print a client JWT, for testing a deployment with curl

The token is printed to stdout only (never logged); use it with test keys, never an EHR's real key.
``--key`` takes the same file everywhere (``simulate`` too): a private PEM or a private JWK.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path

from cds_service.security.keys import (
    NEW_KEY_ALGORITHMS,
    KeyFileError,
    generate_signing_key,
    load_signing_key,
    write_private_pem,
)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser(
        "trusted-clients", help="check the trusted-clients file (CDS_TRUSTED_CLIENTS)"
    )
    check.add_argument("file", nargs="?", type=Path, help="default: $CDS_TRUSTED_CLIENTS")
    check.add_argument("--fetch", action="store_true", help="also fetch every jwks_url and list its kids")
    check.set_defaults(func=_check)

    from cds_service.cli import KEYS_HELP, command_group

    new = command_group(subparsers, "keys", KEYS_HELP).add_parser(
        "new",
        help="write a private key (PEM, 0600) and print its JWKS entry (kid = RFC 7638 thumbprint)",
        description="Writes a new private key for a test client and prints the public key set to publish "
        "at the client's jwks_url or to paste into the trusted-clients file under 'jwks'.",
    )
    new.add_argument("--out", type=Path, required=True, help="file for the private key (PEM); created 0600")
    new.add_argument("--alg", choices=NEW_KEY_ALGORITHMS, default="ES384", help="default ES384 (P-384)")
    new.add_argument("--kid", help="key id (default: the RFC 7638 thumbprint of the public key)")
    new.add_argument("--force", action="store_true", help="replace --out if it exists")
    new.set_defaults(func=_keys_new)

    mint = subparsers.add_parser("mint-token", help="print a signed CDS client JWT (testing only)")
    mint.add_argument(
        "--key", type=Path, required=True, help="private key: PEM (from `keys new`) or a JWK with 'd'"
    )
    mint.add_argument("--kid", help="key id (default: the JWK's kid, else the RFC 7638 thumbprint)")
    mint.add_argument("--iss", required=True, help="the issuer, as listed in the trusted-clients file")
    mint.add_argument("--aud", required=True, help="the exact endpoint URL the token is for")
    mint.add_argument("--tenant", help="tenant claim, when the client lists tenants")
    mint.add_argument("--jku", help="add a jku header (must be listed for the client)")
    mint.add_argument("--lifetime", type=int, default=300, help="seconds (default 300)")
    mint.set_defaults(func=_mint)


def _check(args: argparse.Namespace) -> int:
    import os

    from cds_service.config import ConfigError
    from cds_service.security.config import load_trusted_clients
    from cds_service.security.jwks import JwksCache, JwksFetchError

    path = args.file or (
        Path(os.environ["CDS_TRUSTED_CLIENTS"]) if os.environ.get("CDS_TRUSTED_CLIENTS") else None
    )
    if path is None:
        raise ConfigError("give the file, or set CDS_TRUSTED_CLIENTS")
    clients = load_trusted_clients(path)
    status = 0
    for client in clients:
        kids = ", ".join(str(key["kid"]) for key in client.static_keys) or "-"
        print(f"{client.iss}{f' ({client.name})' if client.name else ''}")
        print(f"  keys on file: {kids}")
        print(f"  tenants: {', '.join(client.tenants) or 'any'}")
        print(f"  fhir_servers: {', '.join(client.fhir_servers) or 'none (every fhirServer will get 403)'}")
        for url in client.jwks_urls:
            if not args.fetch:
                print(f"  jwks_url: {url}")
                continue
            try:
                fetched = JwksCache().fetch(url)
                print(f"  jwks_url: {url} -> kids {', '.join(sorted(fetched)) or 'none usable'}")
            except JwksFetchError as exc:
                print(f"  jwks_url: {url} -> FAILED ({exc})")
                status = 1
    print(f"{len(clients)} trusted client(s) in {path}")
    return status


def _keys_new(args: argparse.Namespace) -> int:
    try:
        key = generate_signing_key(args.alg, args.kid)
        write_private_pem(key, args.out, overwrite=args.force)
    except KeyFileError as exc:
        print(f"cds-service: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(key.jwks(), indent=2))
    print(
        f"private key written to {args.out} (kid {key.kid}); keep it out of version control", file=sys.stderr
    )
    return 0


def _mint(args: argparse.Namespace) -> int:
    import jwt

    try:
        key = load_signing_key(args.key, args.kid)
    except KeyFileError as exc:
        print(f"cds-service: --key: {exc}", file=sys.stderr)
        return 2
    now = int(time.time())
    claims = {
        "iss": args.iss,
        "aud": args.aud,
        "iat": now,
        "exp": now + args.lifetime,
        "jti": str(uuid.uuid4()),
    }
    if args.tenant:
        claims["tenant"] = args.tenant
    headers = {"typ": "JWT", "kid": key.kid, **({"jku": args.jku} if args.jku else {})}
    print(jwt.encode(claims, key.private_key, algorithm=key.alg, headers=headers))
    return 0
