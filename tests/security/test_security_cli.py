"""The security subcommands: check a trusted-clients file, mint a test token that the service accepts."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path

import pytest
import responses
from helpers.security import ISS, PUBLIC_BASE, client_entry, jwks_of, make_keypair, write_trusted_clients

from cds_service.config import ConfigError
from cds_service.security.cli import register_cli
from cds_service.security.config import load_trusted_clients
from cds_service.security.jwt_verifier import JwtVerifier
from cds_service.security.keys import jwk_thumbprint

EXAMPLES = Path(__file__).resolve().parents[3] / "shared/cds-hooks/hl7-cds-hooks-2.0.1-examples"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_check_lists_clients_and_fetched_kids(tmp_path, capsys):
    key = make_keypair("ES384")
    url = "https://ehr.example.org/jwks"
    path = write_trusted_clients(
        tmp_path, [client_entry(ISS, jwks_url=url, jwks=jwks_of(key), tenants=["t1"])]
    )
    with responses.RequestsMock() as mock:
        mock.get(url, json=jwks_of(key))
        assert run("trusted-clients", str(path), "--fetch") == 0
    out = capsys.readouterr().out
    assert ISS in out and key.kid in out and "t1" in out and "1 trusted client(s)" in out


def test_check_reports_an_unreachable_key_set(tmp_path, capsys):
    path = write_trusted_clients(tmp_path, [client_entry(ISS, jwks_url="https://ehr.example.org/jwks")])
    with responses.RequestsMock() as mock:
        mock.get("https://ehr.example.org/jwks", status=500)
        assert run("trusted-clients", str(path), "--fetch") == 1
    assert "FAILED (HTTP 500)" in capsys.readouterr().out


def test_check_refuses_a_broken_file(tmp_path):
    (tmp_path / "c.yaml").write_text("clients: []")
    with pytest.raises(ConfigError):
        run("trusted-clients", str(tmp_path / "c.yaml"))


def test_minted_token_is_accepted_by_the_verifier(tmp_path, capsys):
    private = EXAMPLES / "spec-25-jwk-private-example-only.json"
    if not private.is_file():
        pytest.skip("spec examples not available")
    public = json.loads((EXAMPLES / "spec-24-jwks-public.json").read_text())
    aud = f"{PUBLIC_BASE}/cds-services/amifampridine-order-sign"
    assert run("mint-token", "--key", str(private), "--iss", ISS, "--aud", aud, "--tenant", "t1") == 0
    token = capsys.readouterr().out.strip()
    path = write_trusted_clients(tmp_path, [client_entry(ISS, jwks=public)])
    client = JwtVerifier(load_trusted_clients(path)).verify(token, aud)
    assert (client.iss, client.tenant, client.kid) == (ISS, "t1", "example-kid")


def test_mint_refuses_a_public_key(tmp_path, capsys):
    public_only = tmp_path / "pub.json"
    public_only.write_text(json.dumps(make_keypair("ES384").public_jwk))
    assert run("mint-token", "--key", str(public_only), "--iss", ISS, "--aud", PUBLIC_BASE) == 2


def test_keys_new_writes_a_private_pem_that_mint_token_signs_with(tmp_path, capsys):
    pem = tmp_path / "client.pem"
    assert run("keys", "new", "--out", str(pem)) == 0
    jwks = json.loads(capsys.readouterr().out)
    [entry] = jwks["keys"]
    assert "d" not in entry and entry["alg"] == "ES384" and entry["kid"] == jwk_thumbprint(entry)
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert pem.read_text().startswith("-----BEGIN PRIVATE KEY-----")

    aud = f"{PUBLIC_BASE}/cds-services/amifampridine-order-select"
    assert run("mint-token", "--key", str(pem), "--iss", ISS, "--aud", aud) == 0
    token = capsys.readouterr().out.strip()
    path = write_trusted_clients(tmp_path, [client_entry(ISS, jwks=jwks)])
    client = JwtVerifier(load_trusted_clients(path)).verify(token, aud)
    assert (client.iss, client.kid) == (ISS, entry["kid"])


def test_keys_new_never_overwrites_a_key_by_accident(tmp_path, capsys):
    pem = tmp_path / "client.pem"
    assert run("keys", "new", "--out", str(pem), "--alg", "RS384") == 0
    first = pem.read_bytes()
    assert run("keys", "new", "--out", str(pem)) == 2
    assert pem.read_bytes() == first
    assert "exists" in capsys.readouterr().err
    assert run("keys", "new", "--out", str(pem), "--force") == 0
    assert pem.read_bytes() != first


def test_mint_token_says_in_one_line_why_a_key_file_is_unusable(tmp_path, capsys):
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert run("mint-token", "--key", str(junk), "--iss", ISS, "--aud", PUBLIC_BASE) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an unencrypted PEM private key" in err and "Traceback" not in err
    assert run("mint-token", "--key", str(tmp_path / "absent.pem"), "--iss", ISS, "--aud", PUBLIC_BASE) == 2
    assert "cannot read key" in capsys.readouterr().err
