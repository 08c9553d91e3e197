"""Every CLI error is one line on stderr and a non-zero exit status, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixture_cases import request_of
from flask import Flask
from live_server import serving
from sekmet_server import FhirServer, free_port

from cds_service.cli import main
from cds_service.integration.fixtures import Case

CLI = str(Path(sys.executable).with_name("cds-service"))


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], status: int = 2) -> str:
    assert main(argv) == status
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("cds-service: "), lines[0]
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.fixture
def order_file(seizure_case: Case, tmp_path: Path) -> Path:
    path = tmp_path / "order.json"
    path.write_text(json.dumps(request_of(seizure_case)["context"]["draftOrders"]))
    return path


def simulate(fhir: str, order: Path, service: str) -> list[str]:
    return [
        "simulate",
        "--fhir-server",
        fhir,
        "--patient",
        "p1",
        "--order",
        str(order),
        "--service-url",
        service,
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read order"),  # no such file
        ("{", "is not valid JSON"),
        ("[1, 2]", "must hold a FHIR resource or a Bundle"),
    ],
    ids=["missing", "invalid-json", "not-a-resource"],
)
def test_a_bad_order_file_is_one_line_before_any_call(
    content: str | None, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    order = tmp_path / "order.json"
    if content is not None:
        order.write_text(content)
    # Nothing listens on either port: the file is refused before the first request is made.
    closed = f"http://127.0.0.1:{free_port()}"
    assert expected in one_line_error(capsys, simulate(closed, order, closed))


def test_an_order_path_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    assert "Is a directory" in one_line_error(capsys, simulate(closed, tmp_path, closed))


def test_an_unreadable_request_for_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "cannot read request" in one_line_error(capsys, ["evaluate", str(tmp_path / "nope.json")])
    (tmp_path / "broken.json").write_text('{"hook": ')
    assert "is not valid JSON" in one_line_error(capsys, ["evaluate", str(tmp_path / "broken.json")])


def test_an_unreachable_service(order_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(capsys, simulate(closed, order_file, closed))
    assert f"service {closed}/cds-services unreachable" in line


def test_a_broken_key_file(order_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "client.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    closed = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(capsys, [*simulate(closed, order_file, closed), "--key", str(key), "--iss", "x"])
    assert line.startswith("cds-service: --key: ") and "not an unencrypted PEM private key" in line
    line = one_line_error(capsys, ["mint-token", "--key", str(key), "--iss", "x", "--aud", "y"])
    assert "not an unencrypted PEM private key" in line


def test_a_missing_token_file(order_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    argv = [*simulate(closed, order_file, closed), "--fhir-token-file", str(tmp_path / "token")]
    assert "cannot read --fhir-token-file" in one_line_error(capsys, argv)


@pytest.mark.integration
def test_an_unreachable_fhir_server(
    order_file: Path, make_service: Callable[..., Flask], capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with serving(make_service()) as url:
        line = one_line_error(capsys, simulate(closed, order_file, url))
    assert f"FHIR server {closed}/ unreachable" in line


@pytest.mark.integration
def test_an_unwritable_save_request_path(
    order_file: Path,
    fhir_server: FhirServer,
    make_service: Callable[..., Flask],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    target = tmp_path / "no-such-dir" / "sent.json"
    with serving(make_service()) as url:
        argv = [*simulate(fhir_server.base_url, order_file, url), "--save-request", str(target)]
        line = one_line_error(capsys, argv)
    assert line == f"cds-service: simulate: {target}: No such file or directory"


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    """The console script itself, in a process of its own: status 2 and one line."""
    (tmp_path / "key.pem").write_text("not a key")
    result = subprocess.run(
        [CLI, "mint-token", "--key", str(tmp_path / "key.pem"), "--iss", "a", "--aud", "b"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (RuntimeError("something nobody expected"), "RuntimeError: something nobody expected"),
        (ImportError("no module named 'lxml'", name="lxml"), "ImportError: no module named 'lxml'"),
    ],
    ids=["runtime-error", "import-error-not-tools"],
)
def test_an_unexpected_error_is_one_line_too(
    error: Exception,
    shown: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from cds_service.integration import cli as integration_cli

    def broken(args: Any) -> int:
        raise error

    monkeypatch.setattr(integration_cli, "run_evaluate", broken)
    monkeypatch.delenv("CDS_CLI_TRACEBACK", raising=False)
    line = one_line_error(capsys, ["evaluate", str(tmp_path / "x.json")])
    assert f"evaluate failed ({shown})" in line
    monkeypatch.setenv("CDS_CLI_TRACEBACK", "1")
    with pytest.raises(type(error)):
        main(["evaluate", str(tmp_path / "x.json")])
