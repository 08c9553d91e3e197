"""Subcommands ``trusted-clients`` and ``mint-token`` of ``cds-service`` (see ``register_cli``).

    cds-service trusted-clients [FILE] [--fetch]   check the file; with --fetch, also each key set URL
    cds-service mint-token --key private.jwk --iss ISS --aud URL [--tenant T]
                                                   print a client JWT, for testing a deployment with curl

The token is printed to stdout only (never logged); use it with test keys, never an EHR's real key.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser(
        "trusted-clients", help="check the trusted-clients file (CDS_TRUSTED_CLIENTS)"
    )
    check.add_argument("file", nargs="?", type=Path, help="default: $CDS_TRUSTED_CLIENTS")
    check.add_argument("--fetch", action="store_true", help="also fetch every jwks_url and list its kids")
    check.set_defaults(func=_check)

    mint = subparsers.add_parser("mint-token", help="print a signed CDS client JWT (testing only)")
    mint.add_argument("--key", type=Path, required=True, help="private JWK (JSON) with kid and alg")
    mint.add_argument("--iss", required=True)
    mint.add_argument("--aud", required=True, help="the exact endpoint URL the token is for")
    mint.add_argument("--tenant")
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


def _mint(args: argparse.Namespace) -> int:
    import jwt

    jwk = json.loads(args.key.read_text(encoding="utf-8"))
    if "d" not in jwk or not jwk.get("kid"):
        print("cds-service: --key must be a private JWK with a kid", file=sys.stderr)
        return 2
    key = jwt.PyJWK(jwk)
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
    headers = {"typ": "JWT", "kid": jwk["kid"], **({"jku": args.jku} if args.jku else {})}
    print(jwt.encode(claims, key.key, algorithm=key.algorithm_name, headers=headers))
    return 0
