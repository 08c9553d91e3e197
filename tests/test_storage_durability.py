"""Durability: the real server process (gunicorn) is stopped with SIGTERM and started again; data survives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from storage_requests import (
    SEIZURE_TOPIC,
    SERVICE,
    accepted,
    order_sign_with_seizure_history,
    overridden,
    seizure_card,
)

pytest_plugins = ["conftest_postgres"]

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.integration


def _request(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@contextmanager
def running_server(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """``cds-service serve`` on 127.0.0.1:port; stopped with SIGTERM (as an orchestrator would)."""
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cds_service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _request(base, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
    assert process.returncode == 0, log.read_text(errors="replace")[-3000:]


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
            status, body = _request(
                base, "POST", f"/cds-services/{SERVICE}", order_sign_with_seizure_history()
            )
            assert status == 200
            cards.append(seizure_card(body["cards"]))
        status, summary = _request(
            base,
            "POST",
            f"/cds-services/{SERVICE}/feedback",
            {"feedback": [accepted(cards[0]["uuid"]), overridden(cards[1]["uuid"], code="not-epilepsy")]},
        )
        assert status == 200 and summary["stored"] == 2
        # One more card right before the stop: still in the writer's queue when SIGTERM arrives.
        status, body = _request(base, "POST", f"/cds-services/{SERVICE}", order_sign_with_seizure_history())
        assert status == 200

    with running_server(env, port, log) as base:
        status, report = _request(base, "GET", "/admin/report")
        assert status == 200
        [row] = [r for r in report["rows"] if r["topic"] == SEIZURE_TOPIC]
        assert (row["cardsShown"], row["feedbackReceived"], row["accepted"], row["overridden"]) == (
            4,
            2,
            1,
            1,
        )
        # Idempotency holds across restarts too.
        status, summary = _request(
            base, "POST", f"/cds-services/{SERVICE}/feedback", {"feedback": [accepted(cards[0]["uuid"])]}
        )
        assert (status, summary) == (200, {"stored": 0, "duplicates": 1, "unknownCards": []})

    if database_url.startswith("sqlite"):
        assert (tmp_path / "data").is_dir() or Path(database_url.removeprefix("sqlite:///")).is_file()
