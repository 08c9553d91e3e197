"""Session fixtures of the integration tests: a real FHIR server holding the Synthea patients, the
fixture cases, and apps built the way the service runs (auth on or off, http FHIR allowed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sekmet_server import SYNTHEA_DIR, FhirServer, load_synthea, sekmet_executable, start_sekmet, stop_process

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.integration.fixtures import Case, fixtures_dir, load_manifest


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    if sekmet_executable() is None:
        pytest.skip("sekmet-fhir is not installed; `make install` installs it")
    server = start_sekmet(tmp_path_factory.mktemp("sekmet"))
    try:
        yield server
    finally:
        stop_process(server.process)


@pytest.fixture(scope="session")
def synthea_patients(fhir_server: FhirServer) -> dict[str, str]:
    """Synthea file stem (e.g. Mafalda_Turcotte_...) -> the Patient id the server gave it."""
    paths = sorted(SYNTHEA_DIR.glob("*.json.gz"))
    if not paths:
        pytest.skip(f"no Synthea patients in {SYNTHEA_DIR}")
    return {path.name.split(".")[0]: load_synthea(fhir_server, path) for path in paths}


@pytest.fixture(scope="session")
def fixtures_root() -> Path:
    return fixtures_dir()


@pytest.fixture(scope="session")
def cases(fixtures_root: Path) -> list[Case]:
    return load_manifest(fixtures_root)


@pytest.fixture(scope="session")
def seizure_case(cases: list[Case]) -> Case:
    """A fixture whose expected cards include the seizure-history contraindication."""
    for case in cases:
        if "seizure-history" in case.expected and case.hook == "order-sign":
            return case
    for case in cases:
        if "seizure-history" in case.expected:
            return case
    raise AssertionError("fixtures/manifest.yaml has no case expecting a seizure-history card")


@pytest.fixture
def make_service(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build the service with auth off and http FHIR servers allowed; keywords are extra CDS_* vars."""
    apps: list[Flask] = []

    def build(**env: Any) -> Flask:
        values = {
            "CDS_AUTH": "off",
            "CDS_ALLOW_HTTP_FHIR": "true",
            "CDS_DATA_DIR": str(tmp_path / f"data-{len(apps)}"),
        }
        values.update({name: str(value) for name, value in env.items()})
        app = create_app(Settings.from_env(values))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["cds.audit"].close(timeout=5)
