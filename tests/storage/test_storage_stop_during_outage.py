"""The real server stopped (SIGTERM) while its database takes no writes loses no audit row: what the
workers could not write goes to the spill file, and the next start writes it (issue 15, item 9)."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from helpers.serve import REPO, http_json, running_server
from helpers.storage_requests import SERVICE, order_sign_with_seizure_history

pytest_plugins = ["conftest_postgres"]  # closed_port: a free port for the server
pytestmark = pytest.mark.integration


def issued_cards(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return conn.execute("SELECT count(*) FROM issued_card").fetchone()[0]


def wait_for_cards(database: Path, expected: int, seconds: float = 30) -> int:
    deadline = time.monotonic() + seconds
    while (found := issued_cards(database)) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_a_stop_while_the_database_is_locked_loses_no_card(tmp_path: Path, closed_port: int) -> None:
    data = tmp_path / "data"
    database = data / "cds.sqlite3"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CDS_DATA_DIR": str(data),
        "CDS_AUTH": "off",
        "CDS_WORKERS": "2",
        "CDS_AUDIT_DRAIN_TIMEOUT": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    env.pop("CDS_DATABASE_URL", None)
    log = tmp_path / "server.log"
    cards = 0
    holder = None
    try:
        with running_server(env, closed_port, log) as base:
            for _ in range(2):
                status, body = http_json(
                    base, "POST", f"/cds-services/{SERVICE}", order_sign_with_seizure_history()
                )
                assert status == 200
                cards += len(body["cards"])
            assert wait_for_cards(database, cards) == cards
            # The outage: another process holds SQLite's write lock until after the stop.
            holder = sqlite3.connect(database, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            for _ in range(20):
                status, body = http_json(
                    base, "POST", f"/cds-services/{SERVICE}", order_sign_with_seizure_history()
                )
                assert status == 200
                cards += len(body["cards"])
        spilled = list((data / "audit-spill").glob("audit-spill-*.jsonl"))
        assert spilled, log.read_text(errors="replace")[-3000:]
        assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in spilled)
    finally:
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()

    with running_server(env, closed_port, log):
        assert wait_for_cards(database, cards) == cards
        deadline = time.monotonic() + 10
        while list((data / "audit-spill").iterdir()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert list((data / "audit-spill").iterdir()) == []
