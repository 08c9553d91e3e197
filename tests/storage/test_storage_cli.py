"""``cds-service report | db upgrade | purge`` on a database filled through the store."""

from __future__ import annotations

import argparse
import csv
import io
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, update

from cds_service.config import Settings
from cds_service.storage import build_store
from cds_service.storage.cli import register_cli
from cds_service.storage.migrate import alembic_config
from cds_service.storage.models import IssuedCard
from cds_service.storage.store import utcnow

pytest_plugins = ["conftest_postgres"]

NOT_EPILEPSY = 'Not epilepsy, a, "quoted" one'  # commas and quotes must survive CSV


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="cds-service")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CDS_DATABASE_URL", database_url)
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path / "data"))
    return database_url


def fill(cards: int = 3) -> list[str]:
    store = build_store(Settings.from_env())
    uuids = [str(uuid.uuid4()) for _ in range(cards)]
    store.record_response(
        service_id="svc",
        hook="order-sign",
        hook_instance="hi",
        patient_id="p",
        cards=[
            {
                "uuid": u,
                "indicator": "critical",
                "source": {"label": "l", "topic": {"code": "seizure-history"}},
            }
            for u in uuids
        ],
        client=None,
    )
    store.record_feedback(
        service_id="svc",
        items=[
            {"card": uuids[0], "outcome": "accepted", "acceptedSuggestions": [{"id": "a"}],
             "outcomeTimestamp": "2025-03-01T10:00:00Z"},
            {"card": uuids[1], "outcome": "overridden", "outcomeTimestamp": "2025-03-01T10:00:00Z",
             "overrideReason": {"reason": {"code": "not-epilepsy", "display": NOT_EPILEPSY}}},
        ],
        client=None,
    )  # fmt: skip
    store.close()
    return uuids


def test_db_upgrade_creates_the_schema(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("db", "upgrade") == 0
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()  # the newest migration
    assert f"revision {head}" in capsys.readouterr().out
    engine = create_engine(env)
    try:
        tables = {"issued_card", "feedback", "store_meta", "jwt_replay"}
        assert tables <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert run("db", "upgrade") == 0  # idempotent


def test_report_json(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    fill()
    assert run("report", "--format", "json") == 0
    report = json.loads(capsys.readouterr().out)
    [row] = report["rows"]
    assert (row["topic"], row["indicator"], row["cardsShown"], row["feedbackReceived"]) == (
        "seizure-history",
        "critical",
        3,
        2,
    )
    assert (row["accepted"], row["overridden"], row["overrideRate"]) == (1, 1, 0.5)
    assert run("report", "--format", "json", "--since", "2999-01-01") == 0
    assert json.loads(capsys.readouterr().out)["rows"] == []


def test_report_csv(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    fill()
    assert run("report", "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows == [
        {
            "topic": "seizure-history",
            "indicator": "critical",
            "cardsShown": "3",
            "feedbackReceived": "2",
            "accepted": "1",
            "overridden": "1",
            "overrideRate": "0.5000",
            "suppressedAtSign": "0",  # cards not repeated at order-sign (issue 17, item 4)
            "topOverrideReasons": f"{NOT_EPILEPSY} (1)",
        }
    ]


def test_report_table(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    fill()
    assert run("report") == 0
    out = capsys.readouterr().out
    assert "seizure-history" in out and "critical" in out and "50%" in out


def test_report_rejects_a_bad_date(env: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run("report", "--since", "last week")
    assert exit_info.value.code == 2


def test_purge_uses_retention_days(
    env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    uuids = fill()
    engine = create_engine(env)
    try:
        with engine.begin() as conn:
            conn.execute(
                update(IssuedCard)
                .where(IssuedCard.card_uuid == uuids[2])
                .values(issued_at=utcnow() - timedelta(days=40))
            )
    finally:
        engine.dispose()
    monkeypatch.setenv("CDS_AUDIT_RETENTION_DAYS", "60")
    assert run("purge") == 0
    assert "deleted 0 audit records older than 60 days" in capsys.readouterr().out
    assert run("purge", "--days", "30", "--dry-run") == 0
    assert "would delete 1 audit records older than 30 days" in capsys.readouterr().out
    assert run("purge", "--days", "30") == 0  # the dry run deleted nothing
    assert "deleted 1 audit records older than 30 days" in capsys.readouterr().out


def test_unreachable_database_is_one_line_and_status_1(
    closed_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDS_DATABASE_URL", f"postgresql+psycopg://cds:hunter2@127.0.0.1:{closed_port}/cds")
    for argv in (("report",), ("db", "upgrade"), ("purge",)):
        assert run(*argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("cds-service: database error") and "hunter2" not in err


def test_db_current_names_both_revisions(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert run("db", "upgrade") == 0
    capsys.readouterr()
    assert run("db", "current") == 0
    assert f"at revision {head}; this version ships {head} (up to date)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [("report",), ("report", "--format", "json"), ("purge", "--dry-run"), ("db", "current")]
)
def test_reading_commands_never_create_a_database(
    argv: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Run from another directory, the default ./data/cds.sqlite3 used to be created empty and reported as 0.
    monkeypatch.delenv("CDS_DATABASE_URL", raising=False)
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path / "elsewhere"))
    assert run(*argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no audit database at" in err and "does not create one" in err
    assert not (tmp_path / "elsewhere").exists()
