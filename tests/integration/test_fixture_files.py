"""The committed fixtures: generated files in sync, and every case still giving its expected cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixture_cases import manifest_cases, request_of
from helpers.builders import topics

from cds_service.integration import fixtures
from cds_service.integration.offline import evaluate_request
from cds_service.runtime import Runtime


def test_manifest_lists_cases_with_requests(fixtures_root: Path) -> None:
    cases = fixtures.load_manifest(fixtures_root)
    assert cases, "fixtures/manifest.yaml lists no cases"
    for case in cases:
        assert fixtures.request_path(fixtures_root, case.id).is_file(), case.id
        assert case.situation, f"{case.id} has no situation"


def test_generated_bundles_and_readme_are_in_sync(fixtures_root: Path) -> None:
    stale = fixtures.stale_files(fixtures_root)
    assert not stale, "run `python -m cds_service.integration.fixtures`; stale: " + ", ".join(map(str, stale))


@pytest.mark.parametrize("case", manifest_cases(), ids=lambda case: case.id)
def test_each_fixture_gives_its_expected_cards_offline(case: fixtures.Case, runtime: Runtime) -> None:
    body = request_of(case)
    evaluation = evaluate_request(body, runtime.knowledge, runtime.templates, options=runtime.options)
    assert topics(evaluation.outcome.cards) == sorted(case.expected)
    assert evaluation.call.service.hook.hook == case.hook


def _request(prefetch: dict) -> dict:
    return {
        "hook": "order-sign",
        "hookInstance": "x",
        "context": {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": {"resourceType": "Bundle"}},
        "prefetch": prefetch,
    }


def test_bundle_puts_every_prefetch_resource_once_patient_first(tmp_path: Path) -> None:
    patient = {"resourceType": "Patient", "id": "p1"}
    condition = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}
    prefetch = {
        "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": condition}]},
        "patient": patient,
        "medications": None,
        "renal": {"resourceType": "OperationOutcome", "issue": []},
        "weight": {"resourceType": "Bundle", "entry": [{"resource": condition}]},  # same resource twice
    }
    bundle = fixtures.transaction_bundle(_request(prefetch), tmp_path / "x.json")
    assert bundle["type"] == "transaction"
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "PUT", "url": "Patient/p1"},
        {"method": "PUT", "url": "Condition/c1"},
    ]
    assert bundle["entry"][1]["resource"] == condition


def test_bundle_refuses_resources_without_id_or_with_two_versions(tmp_path: Path) -> None:
    nameless = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Condition"}}]}
    with pytest.raises(fixtures.FixtureError, match=r"prefetch.conditions has no id"):
        fixtures.transaction_bundle(_request({"conditions": nameless}), tmp_path / "x.json")
    same_id = {"resourceType": "Patient", "id": "p1"}
    twice = {
        "patient": {"resourceType": "Patient", "id": "p1", "gender": "male"},
        "conditions": {"resourceType": "Bundle", "entry": [{"resource": same_id}]},
    }
    with pytest.raises(fixtures.FixtureError, match="Patient/p1 appears twice"):
        fixtures.transaction_bundle(_request(twice), tmp_path / "x.json")


def test_generator_writes_then_reports_nothing_stale(tmp_path: Path) -> None:
    (tmp_path / "requests").mkdir()
    prefetch = {"patient": {"resourceType": "Patient", "id": "p1"}}
    (tmp_path / "requests" / "one.json").write_text(json.dumps(_request(prefetch)))
    (tmp_path / "manifest.yaml").write_text(
        "- id: one\n  situation: A | piped situation\n  hook: order-sign\n  expected: [seizure-history]\n"
    )
    (tmp_path / "bundles").mkdir()
    (tmp_path / "bundles" / "gone.json").write_text("{}")
    assert fixtures.main(["--dir", str(tmp_path), "--check"]) == 1
    assert fixtures.main(["--dir", str(tmp_path)]) == 0
    assert not (tmp_path / "bundles" / "gone.json").exists()
    assert fixtures.stale_files(tmp_path) == []
    readme = (tmp_path / "README.md").read_text()
    assert "| [one](requests/one.json) | [bundle](bundles/one.json) | order-sign | A \\| piped" in readme
    assert "`seizure-history`" in readme
    (tmp_path / "requests" / "one.json").write_text(json.dumps(_request({})))
    assert fixtures.stale_files(tmp_path) == [tmp_path / "bundles" / "one.json"]


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    from cds_service.config import Settings

    return Runtime.start(Settings.from_env({}))
