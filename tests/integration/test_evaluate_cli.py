"""``cds-service evaluate``: a saved request, offline, printed for a person or as JSON, with --explain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.builders import topics

from cds_service.cli import main
from cds_service.integration.fixtures import fixtures_dir

pytestmark = pytest.mark.integration

SEIZURE = fixtures_dir() / "requests" / "seizure-epilepsy.json"
UNAVAILABLE = fixtures_dir() / "requests" / "nat2-unavailable.json"
CLEAN = fixtures_dir() / "requests" / "clean-adult-new-start.json"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["evaluate", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cards_are_printed_readably(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, str(SEIZURE))
    assert status == 0
    assert "1 card(s): 1 critical" in out
    assert "CRITICAL" in out and "Amifampridine is contraindicated: history of seizures" in out
    assert "Override reasons" in out and "Source: FIRDAPSE" in out
    assert "**" not in out, "markdown was printed raw instead of rendered"
    assert "\x1b[" not in out, "no colour codes when the output is not a terminal"


def test_colour_can_be_forced(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, str(SEIZURE), "--color")
    assert status == 0
    assert "\x1b[" in out and "31m" in out  # the critical indicator in red


def test_json_is_the_raw_cds_hooks_response(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, str(SEIZURE), "--json")
    assert status == 0
    response = json.loads(out)
    assert set(response) == {"cards"}
    assert topics(response["cards"]) == ["seizure-history"]
    assert response["cards"][0]["indicator"] == "critical"


def test_no_cards_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, str(CLEAN))
    assert status == 0
    assert "No cards" in out


def test_explain_shows_data_rules_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    request = json.loads(SEIZURE.read_text())
    condition_ids = [e["resource"]["id"] for e in request["prefetch"]["conditions"]["entry"]]
    status, out, _ = run(capsys, str(SEIZURE), "--explain")
    assert status == 0
    assert "Explanation" in out
    assert "conditions (from prefetch)" in out
    assert all(f"Condition/{cid}" in out for cid in condition_ids)
    assert "seizure-history (reads conditions): fired: seizure-history" in out
    assert "renal-impairment (reads renal): did not fire" in out


def test_explain_reports_unavailable_data_and_rules_not_run(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, str(UNAVAILABLE), "--json", "--explain")
    assert status == 0
    result = json.loads(out)
    assert topics(result["response"]["cards"]) == ["data-unavailable"]
    explain = result["explain"]
    assert explain["data"]["nat2"]["source"] == "unavailable"
    [nat2] = [rule for rule in explain["rules"] if rule["rule"] == "nat2-poor-metabolizer"]
    assert nat2["status"] == "not run: nat2 unavailable"


def test_unrelated_order_explains_that_nothing_was_checked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    request = json.loads(SEIZURE.read_text())
    for entry in request["context"]["draftOrders"]["entry"]:
        entry["resource"].pop("medicationReference", None)
        entry["resource"]["medicationCodeableConcept"] = {"text": "Paracetamol 500 MG Oral Tablet"}
    path = tmp_path / "unrelated.json"
    path.write_text(json.dumps(request))
    status, out, _ = run(capsys, str(path), "--explain")
    assert status == 0
    assert "No cards" in out and "nothing was checked and no patient data was read" in out


def test_invalid_request_names_the_field_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    request = json.loads(SEIZURE.read_text())
    del request["context"]["patientId"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(request))
    status, out, _ = run(capsys, str(path))
    assert status == 1
    assert "HTTP 400" in out and "context.patientId" in out


def test_unreadable_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, err = run(capsys, str(tmp_path / "missing.json"))
    assert status == 2 and "cannot read request" in err
    (tmp_path / "broken.json").write_text("{")
    status, _, err = run(capsys, str(tmp_path / "broken.json"))
    assert status == 2 and "not valid JSON" in err


def test_the_installed_command_runs(tmp_path: Path) -> None:
    executable = Path(sys.executable).parent / "cds-service"
    result = subprocess.run(
        [str(executable), "evaluate", str(SEIZURE), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert topics(json.loads(result.stdout)["cards"]) == ["seizure-history"]
