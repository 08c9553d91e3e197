"""The fixture cases at collection time, for ``pytest.mark.parametrize``."""

from __future__ import annotations

import json
from typing import Any

from cds_service.integration.fixtures import Case, FixtureError, fixtures_dir, load_manifest, load_request


def manifest_cases() -> list[Case]:
    """Every case of fixtures/manifest.yaml; an unreadable manifest gives none here and fails in
    ``test_fixture_files`` with its message."""
    try:
        return load_manifest(fixtures_dir())
    except FixtureError:
        return []


def case_ids() -> list[str]:
    return [case.id for case in manifest_cases()]


def request_of(case: Case) -> dict[str, Any]:
    return load_request(fixtures_dir(), case.id)


def bundle_of(case: Case) -> dict[str, Any]:
    return json.loads((fixtures_dir() / "bundles" / f"{case.id}.json").read_text(encoding="utf-8"))
