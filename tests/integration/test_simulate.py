"""``cds-service simulate`` end to end: discovery, prefetch from a real FHIR server, JWT, cards."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fixture_cases import bundle_of, request_of
from flask import Flask
from helpers.builders import topics
from helpers.security import client_entry, write_trusted_clients
from live_server import serving
from sekmet_server import FhirServer, free_port

from cds_service.cli import main
from cds_service.integration.fixtures import Case
from cds_service.integration.simulator import jwk_thumbprint, load_signing_key
from cds_service.security.keys import KeyFileError

ISS = "https://ehr-simulator.example.org"


@pytest.fixture
def seizure_patient(seizure_case: Case, fhir_server: FhirServer, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The seizure fixture's patient loaded into the FHIR server, and its draft orders as ORDER.json."""
    body = request_of(seizure_case)
    order_file = tmp_path / "order.json"
    order_file.write_text(json.dumps(body["context"]["draftOrders"]))
    with fhir_server.loaded(bundle_of(seizure_case)):
        yield {
            "id": body["context"]["patientId"],
            "order": order_file,
            "expected": sorted(seizure_case.expected),
        }


def write_key(path: Path, kind: str = "ec") -> Path:
    key: Any = (
        ec.generate_private_key(ec.SECP384R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def simulate_args(fhir: FhirServer, patient: dict[str, Any], service_url: str, *extra: str) -> list[str]:
    return [
        "simulate",
        "--fhir-server",
        fhir.base_url,
        "--patient",
        patient["id"],
        "--order",
        str(patient["order"]),
        "--service-url",
        service_url,
        *extra,
    ]


@pytest.mark.integration
def test_simulate_shows_the_cards_of_a_patient_on_the_fhir_server(
    seizure_patient: dict[str, Any],
    fhir_server: FhirServer,
    make_service: Callable[..., Flask],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    with serving(make_service()) as url:
        saved = tmp_path / "sent.json"
        args = simulate_args(fhir_server, seizure_patient, url, "--json", "--save-request", str(saved))
        assert main(args) == 0
        response = json.loads(capsys.readouterr().out)
        assert topics(response["cards"]) == seizure_patient["expected"]
        sent = json.loads(saved.read_text())
        # Prefetch filled from discovery: every key the service advertises, conditions holding the seizure.
        assert set(sent["prefetch"]) == {
            "patient",
            "medications",
            "conditions",
            "allergies",
            "weight",
            "renal",
            "nat2",
        }
        assert sent["prefetch"]["conditions"]["entry"], "conditions were not read from the FHIR server"
        assert sent["fhirServer"] == fhir_server.base_url

        assert main(simulate_args(fhir_server, seizure_patient, url, "--explain", "--no-prefetch")) == 0
        out = capsys.readouterr().out
        assert "CRITICAL" in out and "history of seizures" in out
        assert "seizure-history (reads conditions): fired: seizure-history" in out
        assert "Condition/" in out
        assert "prefetch resources: none sent" in out
        # Nothing was prefetched: the service read the data from the FHIR server, and the explanation says so.
        assert "conditions (from FHIR server):" in out
        assert "(from prefetch)" not in out
        assert "WARNING" not in out

        assert main(simulate_args(fhir_server, seizure_patient, url, "--explain")) == 0
        out = capsys.readouterr().out
        assert "conditions (from prefetch):" in out and "(from FHIR server)" not in out


@pytest.mark.integration
def test_simulate_against_an_auth_on_service_with_and_without_a_jwt(
    seizure_patient: dict[str, Any],
    fhir_server: FhirServer,
    make_service: Callable[..., Flask],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    key_file = write_key(tmp_path / "client.pem")
    key = load_signing_key(key_file)
    assert key.alg == "ES384" and key.kid == jwk_thumbprint(key.public_jwk)
    trusted = write_trusted_clients(
        tmp_path, [client_entry(ISS, jwks={"keys": [key.public_jwk]}, fhir_servers=[fhir_server.base_url])]
    )
    port = free_port()
    app = make_service(
        CDS_AUTH="on",
        CDS_TRUSTED_CLIENTS=trusted,
        CDS_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
    )
    with serving(app, port) as url:
        # No token: discovery already answers 401, and the command says so.
        assert main(simulate_args(fhir_server, seizure_patient, url, "--json")) == 2
        assert "401" in capsys.readouterr().err
        # A token from an issuer the service does not trust: 401 too.
        stranger = simulate_args(
            fhir_server, seizure_patient, url, "--key", str(key_file), "--iss", "https://x.example"
        )
        assert main(stranger) == 2
        assert "401" in capsys.readouterr().err
        # Signed by the trusted client (kid = RFC 7638 thumbprint): the cards.
        signed = simulate_args(
            fhir_server, seizure_patient, url, "--key", str(key_file), "--iss", ISS, "--json"
        )
        assert main(signed) == 0
        assert topics(json.loads(capsys.readouterr().out)["cards"]) == seizure_patient["expected"]
        # Without prefetch the service queries the FHIR server itself, which this client may name.
        assert main([*signed, "--no-prefetch"]) == 0
        assert topics(json.loads(capsys.readouterr().out)["cards"]) == seizure_patient["expected"]


def test_rfc7638_thumbprint_example() -> None:
    # The worked example of RFC 7638 section 3.1.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
            "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
            "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
            "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rsa_keys_sign_rs384_and_other_keys_are_refused(tmp_path: Path) -> None:
    assert load_signing_key(write_key(tmp_path / "rsa.pem", "rsa"), kid="mine").alg == "RS384"
    assert load_signing_key(tmp_path / "rsa.pem", kid="mine").kid == "mine"
    p256 = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "p256.pem").write_bytes(
        p256.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    assert load_signing_key(tmp_path / "p256.pem").alg == "ES256"
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(KeyFileError, match="neither a PEM private key nor a JWK"):
        load_signing_key(tmp_path / "junk.pem")
    (tmp_path / "broken.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        load_signing_key(tmp_path / "broken.pem")


@pytest.mark.integration
@pytest.mark.parametrize("prefetch", [[], ["--no-prefetch"]], ids=["prefetch", "no-prefetch"])
def test_a_patient_the_fhir_server_does_not_know_is_said_plainly(
    prefetch: list[str],
    seizure_patient: dict[str, Any],
    fhir_server: FhirServer,
    make_service: Callable[..., Flask],
    capsys: pytest.CaptureFixture[str],
) -> None:
    mistyped = {**seizure_patient, "id": seizure_patient["id"] + "-typo"}
    with serving(make_service()) as url:
        assert main(simulate_args(fhir_server, mistyped, url, *prefetch)) == 0
        out = capsys.readouterr().out
        assert f"WARNING: the FHIR server has no Patient/{mistyped['id']} (HTTP 404" in out
        assert "check --patient" in out

        assert main(simulate_args(fhir_server, mistyped, url, "--json", *prefetch)) == 0
        answer = json.loads(capsys.readouterr().out)
        assert len(answer["warnings"]) == 1 and f"Patient/{mistyped['id']}" in answer["warnings"][0]
        assert "cards" in answer

        # The right patient: no warning field at all.
        assert main(simulate_args(fhir_server, seizure_patient, url, "--json", *prefetch)) == 0
        assert "warnings" not in json.loads(capsys.readouterr().out)


@pytest.mark.integration
def test_the_fhir_token_comes_from_a_file_or_the_environment(
    seizure_patient: dict[str, Any],
    fhir_server: FhirServer,
    make_service: Callable[..., Flask],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token_file = tmp_path / "fhir-token"
    token_file.write_text("token-from-file\n")
    saved = tmp_path / "sent.json"
    with serving(make_service()) as url:
        base = simulate_args(fhir_server, seizure_patient, url, "--json", "--save-request", str(saved))
        assert main([*base, "--fhir-token-file", str(token_file)]) == 0
        capsys.readouterr()
        # Passed on to the service as fhirAuthorization; the saved request masks the token itself.
        assert json.loads(saved.read_text())["fhirAuthorization"]["access_token"] == "***"

        monkeypatch.setenv("CDS_FHIR_TOKEN", "token-from-env")
        assert main(base) == 0
        capsys.readouterr()
        assert "fhirAuthorization" in json.loads(saved.read_text())

        monkeypatch.delenv("CDS_FHIR_TOKEN")
        assert main(base) == 0
        capsys.readouterr()
        assert "fhirAuthorization" not in json.loads(saved.read_text())


def token_of(*argv: str, env: dict[str, str] | None = None) -> str | None:
    from cds_service.cli import build_parser
    from cds_service.integration.cli import fhir_token

    args = build_parser().parse_args(
        ["simulate", "--fhir-server", "http://f", "--patient", "p", "--order", "o.json", *argv]
    )
    return fhir_token(args, env or {})


def test_fhir_token_precedence_file_or_flag_then_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  from-file \n")
    env = {"CDS_FHIR_TOKEN": "from-env"}
    assert token_of("--fhir-token-file", str(token_file), env=env) == "from-file"
    assert token_of("--fhir-token", "from-flag", env=env) == "from-flag"
    assert token_of(env=env) == "from-env"
    assert token_of() is None
    assert token_of(env={"CDS_FHIR_TOKEN": "  "}) is None
    with pytest.raises(SystemExit):  # argparse: the two flags exclude each other
        token_of("--fhir-token-file", str(token_file), "--fhir-token", "x")
    token_file.write_text("")
    with pytest.raises(ValueError, match="must hold the token on one line"):
        token_of("--fhir-token-file", str(token_file))
    with pytest.raises(ValueError, match="cannot read --fhir-token-file"):
        token_of("--fhir-token-file", str(tmp_path / "missing"))
