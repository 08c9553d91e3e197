"""``cds-service evaluate --explain`` says how each condition and allergy matched: by code (system|code and
the element) or by name (the name and the field), and names the text matches a cue excluded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.cli import main
from cds_service.integration.fixtures import fixtures_dir

pytestmark = pytest.mark.integration

SEIZURE = fixtures_dir() / "requests" / "seizure-epilepsy.json"
LOCAL = "urn:oid:2.16.840.1.113883.3.9999.5.1"


def _condition(condition_id: str, text: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": condition_id,
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": LOCAL, "code": condition_id.upper()}], "text": text},
    }


@pytest.fixture
def request_path(tmp_path: Path) -> Path:
    """The seizure fixture (epilepsy coded ICD-10-CM G40.909) plus an epilepsy under a local code, a
    negated one, a family history, and a "no known allergy to amifampridine"."""
    request = json.loads(SEIZURE.read_text())
    patient = request["context"]["patientId"]
    entries = request["prefetch"]["conditions"]["entry"]
    entries += [
        {"resource": _condition("by-name", "Epilepsy, generalized", patient)},
        {"resource": _condition("negated", "No history of seizures", patient)},
        {"resource": _condition("family", "Family history of epilepsy", patient)},
    ]
    request["prefetch"]["allergies"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "AllergyIntolerance",
                    "id": "nka",
                    "patient": {"reference": f"Patient/{patient}"},
                    "code": {"text": "No known allergy to amifampridine"},
                }
            }
        ],
    }
    path = tmp_path / "explain-matching.json"
    path.write_text(json.dumps(request), encoding="utf-8")
    return path


def _coded_id() -> str:
    request = json.loads(SEIZURE.read_text())
    (entry,) = request["prefetch"]["conditions"]["entry"]
    return entry["resource"]["id"]


def test_explain_says_by_code_or_by_name_and_the_excluding_cue(
    capsys: pytest.CaptureFixture[str], request_path: Path
) -> None:
    assert main(["evaluate", str(request_path), "--explain"]) == 0
    out = capsys.readouterr().out
    assert (
        f"Condition/{_coded_id()} in History of seizures: by code "
        "http://hl7.org/fhir/sid/icd-10-cm|G40.909 (code.coding[0])"
    ) in out
    assert "Condition/by-name in History of seizures: by name 'Epilepsy' in code.text" in out
    assert (
        "Condition/negated: name 'seizures' in code.text not counted for History of seizures: "
        "negation cue 'no history of'"
    ) in out
    assert (
        "Condition/family: name 'epilepsy' in code.text not counted for History of seizures: "
        "family cue 'family history of'"
    ) in out
    assert "AllergyIntolerance/nka: name 'amifampridine' in code.text not counted" in out
    assert "negation cue 'no known'" in out


def test_explain_json_lists_matches_and_exclusions(
    capsys: pytest.CaptureFixture[str], request_path: Path
) -> None:
    assert main(["evaluate", str(request_path), "--json", "--explain"]) == 0
    explain = json.loads(capsys.readouterr().out)["explain"]
    seizure = {m["ref"]: m for m in explain["matches"] if m["valueSet"] == "History of seizures"}
    assert seizure[f"Condition/{_coded_id()}"]["by"] == "code"
    assert (seizure["Condition/by-name"]["by"], seizure["Condition/by-name"]["where"]) == (
        "name",
        "code.text",
    )
    assert "Condition/negated" not in seizure and "Condition/family" not in seizure
    kinds = {(e["ref"], e["kind"]) for e in explain["textExclusions"]}
    assert {("Condition/negated", "negation"), ("Condition/family", "family")} <= kinds
    assert ("AllergyIntolerance/nka", "negation") in kinds
