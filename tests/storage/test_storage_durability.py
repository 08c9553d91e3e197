"""Durability: the real server process (gunicorn) is stopped with SIGTERM and started again; data survives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.serve import REPO, http_json, running_server
from helpers.storage_requests import (
    SEIZURE_TOPIC,
    SERVICE,
    accepted,
    order_sign_with_seizure_history,
    overridden,
    seizure_card,
)

pytest_plugins = ["conftest_postgres"]

pytestmark = pytest.mark.integration


def test_data_survives_a_restart(database_url: str, tmp_path: Path, closed_port: int) -> None:
    port = closed_port  # free now; the server takes it
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CDS_DATA_DIR": str(tmp_path / "data"),
        "CDS_DATABASE_URL": database_url,
        "CDS_AUTH": "off",
        "CDS_ADMIN_ENABLED": "true",
        "CDS_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    log = tmp_path / "server.log"
    with running_server(env, port, log) as base:
        cards = []
        for _ in range(3):
            status, body = http_json(
                base, "POST", f"/cds-services/{SERVICE}", order_sign_with_seizure_history()
            )
            assert status == 200
            cards.append(seizure_card(body["cards"]))
        status, summary = http_json(
            base,
            "POST",
            f"/cds-services/{SERVICE}/feedback",
            {"feedback": [accepted(cards[0]["uuid"]), overridden(cards[1]["uuid"], code="not-epilepsy")]},
        )
        assert status == 200 and summary["stored"] == 2
        # One more card right before the stop: still in the writer's queue when SIGTERM arrives.
        status, body = http_json(base, "POST", f"/cds-services/{SERVICE}", order_sign_with_seizure_history())
        assert status == 200

    with running_server(env, port, log) as base:
        status, report = http_json(base, "GET", "/admin/report")
        assert status == 200
        [row] = [r for r in report["rows"] if r["topic"] == SEIZURE_TOPIC]
        assert (row["cardsShown"], row["feedbackReceived"], row["accepted"], row["overridden"]) == (
            4,
            2,
            1,
            1,
        )
        # Idempotency holds across restarts too.
        status, summary = http_json(
            base, "POST", f"/cds-services/{SERVICE}/feedback", {"feedback": [accepted(cards[0]["uuid"])]}
        )
        assert (status, summary) == (200, {"stored": 0, "duplicates": 1, "unknownCards": []})

    if database_url.startswith("sqlite"):
        assert (tmp_path / "data").is_dir() or Path(database_url.removeprefix("sqlite:///")).is_file()
