"""Shared fixtures: an app per test with its own configuration and data directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service.app import create_app
from cds_service.config import Settings

SHARED = Path(__file__).resolve().parents[2] / "shared"
# The EHR FHIR servers the tests mock (with ``responses``); real servers in tests run on loopback.
TEST_FHIR_SERVERS = "https://ehr.example.org/fhir,https://ehr.example.org/fhir/r4"


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[..., Flask]:
    """Build an app with auth off and a private data dir; keyword arguments are extra CDS_* variables.

    With auth off only loopback FHIR servers and those in CDS_FHIR_SERVER_ALLOWLIST may be named, so the
    stand-in EHR servers the tests mock are listed, as an operator lists theirs.
    """

    def build(**env: str) -> Flask:
        values = {
            "CDS_AUTH": "off",
            "CDS_ALLOW_HTTP_FHIR": "true",
            "CDS_DATA_DIR": str(tmp_path / "data"),
            "CDS_FHIR_SERVER_ALLOWLIST": TEST_FHIR_SERVERS,
        }
        values.update(env)
        return create_app(Settings.from_env(values))

    return build


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app().test_client()


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the team's shared reference folder is not at {SHARED}")
    return SHARED
