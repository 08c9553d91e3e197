"""The audit store used directly: recording, feedback idempotency, report figures, retention, failures."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, func, inspect, select, text, update

from cds_service.metrics import AUDIT_WRITE_FAILURES
from cds_service.storage import migrate
from cds_service.storage.config import StorageConfig
from cds_service.storage.models import Base, Feedback, IssuedCard, StoreMeta
from cds_service.storage.store import AuditStore, utcnow

pytest_plugins = ["conftest_postgres"]  # the database_url fixture: SQLite, and PostgreSQL when enabled

SERVICE = "amifampridine-order-sign"
HEAD = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()  # the newest migration
PATIENT = "patient-4711"
COMMENT = "pt seen by neuro today, discussed with Dr Example"


def new_store(url: str, tmp_path: Path, **overrides: Any) -> AuditStore:
    return AuditStore(
        StorageConfig(database_url=url, data_dir=tmp_path, **overrides), rule_version="0.1.0+test"
    )


def make_store(url: str, tmp_path: Path, **overrides: Any) -> AuditStore:
    store = new_store(url, tmp_path, **overrides)
    assert store.start()
    return store


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[AuditStore]:
    store = make_store(database_url, tmp_path)
    yield store
    store.close(timeout=5)


def card(topic: str, indicator: str = "warning") -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "summary": "s",
        "indicator": indicator,
        "source": {"label": "Amifampridine checks", "topic": {"system": "urn:x", "code": topic}},
    }


def issue(
    store: AuditStore, *cards: dict[str, Any], patient: str | None = PATIENT, client: Any = None
) -> None:
    store.record_response(
        service_id=SERVICE,
        hook="order-sign",
        hook_instance=str(uuid.uuid4()),
        patient_id=patient,
        cards=list(cards),
        client=client,
    )


def accepted(card_uuid: str, when: str = "2025-03-01T10:00:00Z") -> dict[str, Any]:
    return {
        "card": card_uuid,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "sugg-1"}],
        "outcomeTimestamp": when,
    }


def overridden(card_uuid: str, code: str | None = None, when: str = "2025-03-01T10:00:00Z") -> dict[str, Any]:
    entry: dict[str, Any] = {"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": when}
    if code:
        entry["overrideReason"] = {
            "reason": {"system": "urn:reasons", "code": code, "display": f"Reason {code}"},
            "userComment": COMMENT,
        }
    return entry


def row_for(report: dict[str, Any], topic: str, indicator: str = "warning") -> dict[str, Any]:
    [row] = [r for r in report["rows"] if r["topic"] == topic and r["indicator"] == indicator]
    return row


def test_schema_from_migrations_matches_models(store: AuditStore) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert {"issued_card", "feedback", "store_meta", "alembic_version"} <= set(
        inspect(store.engine).get_table_names()
    )


def test_cards_are_recorded_without_patient_id(store: AuditStore) -> None:
    c = card("seizure-history")
    client = SimpleNamespace(iss="https://ehr.example.org", tenant="hospital-a")
    issue(store, c, client=client)
    assert store.flush(5)
    with store.engine.connect() as conn:
        row = conn.execute(select(IssuedCard)).one()
    assert row.card_uuid == c["uuid"]
    assert (row.service_id, row.hook, row.topic, row.indicator) == (
        SERVICE,
        "order-sign",
        "seizure-history",
        "warning",
    )
    assert row.rule_version == "0.1.0+test"
    assert (row.client_iss, row.client_tenant) == ("https://ehr.example.org", "hospital-a")
    assert row.patient_hash and len(row.patient_hash) == 64 and PATIENT not in row.patient_hash
    assert abs(row.issued_at - utcnow()) < timedelta(minutes=1)
    with store.engine.connect() as conn:
        everything = " ".join(
            str(value)
            for table in ("issued_card", "store_meta")
            for r in conn.execute(text(f"SELECT * FROM {table}"))
            for value in r
        )
    assert PATIENT not in everything


def test_patient_hash_is_stable_across_restarts_and_depends_on_key(database_url: str, tmp_path: Path) -> None:
    hashes = []
    for _ in range(2):
        store = make_store(database_url, tmp_path)
        issue(store, card("seizure-history"))
        store.close()
        with store.engine.connect() as conn:
            hashes.append(
                conn.execute(select(IssuedCard.patient_hash).order_by(IssuedCard.id.desc())).first()[0]
            )
    assert hashes[0] == hashes[1]
    with store.engine.connect() as conn:  # the key lives in a file, never in the database
        assert conn.execute(select(func.count()).select_from(StoreMeta)).scalar_one() == 0
    assert (tmp_path / "patient-id.key").is_file()

    keyed = make_store(database_url, tmp_path, patient_id_key="configured-key")
    issue(keyed, card("seizure-history"))
    keyed.close()
    with keyed.engine.connect() as conn:
        latest = conn.execute(select(IssuedCard.patient_hash).order_by(IssuedCard.id.desc())).first()[0]
    assert latest != hashes[0]


def test_round_trip_counts_and_rates(store: AuditStore) -> None:
    seizure = [card("seizure-history") for _ in range(4)]
    dose = card("dose-cap", "critical")
    unanswered = card("dose-cap", "critical")
    issue(store, *seizure, dose, unanswered)
    summary = store.record_feedback(
        service_id=SERVICE,
        items=[
            accepted(seizure[0]["uuid"]),
            overridden(seizure[1]["uuid"], "benefit"),
            overridden(seizure[2]["uuid"], "benefit"),
            overridden(seizure[3]["uuid"]),  # no reason given
            accepted(dose["uuid"]),
        ],
        client=None,
    )
    assert summary == {"stored": 5, "duplicates": 0, "unknownCards": []}

    report = store.report()
    seizure_row = row_for(report, "seizure-history")
    assert seizure_row["cardsShown"] == 4
    assert seizure_row["feedbackReceived"] == 4
    assert (seizure_row["accepted"], seizure_row["overridden"]) == (1, 3)
    assert seizure_row["overrideRate"] == 0.75
    assert seizure_row["topOverrideReasons"] == [
        {"code": "benefit", "display": "Reason benefit", "count": 2},
        {"code": None, "display": "(no reason given)", "count": 1},
    ]
    dose_row = row_for(report, "dose-cap", "critical")
    assert (dose_row["cardsShown"], dose_row["feedbackReceived"], dose_row["accepted"]) == (2, 1, 1)
    assert dose_row["overrideRate"] == 0.0
    assert report["totals"] == {
        "cardsShown": 6,
        "feedbackReceived": 5,
        "accepted": 2,
        "overridden": 3,
        "suppressedAtSign": 0,  # cards not repeated at order-sign (issue 17, item 4)
        "overrideRate": 0.6,
    }
    assert report["unknownCardFeedback"] == 0


def test_feedback_fields_are_stored(store: AuditStore) -> None:
    c = card("seizure-history")
    client = SimpleNamespace(iss="https://ehr.example.org", tenant=None)
    issue(store, c, client=client)
    store.record_feedback(
        service_id=SERVICE,
        items=[overridden(c["uuid"], "benefit", when="2025-03-01T11:00:00+01:00")],
        client=client,
    )
    with store.engine.connect() as conn:
        row = conn.execute(select(Feedback)).one()
    assert (row.outcome, row.override_code, row.override_system, row.override_display) == (
        "overridden",
        "benefit",
        "urn:reasons",
        "Reason benefit",
    )
    assert row.user_comment == COMMENT
    assert row.outcome_at.isoformat() == "2025-03-01T10:00:00"  # normalised to UTC
    assert row.card_known is True
    assert row.client_iss == "https://ehr.example.org"


def test_feedback_is_idempotent(store: AuditStore) -> None:
    c = card("seizure-history")
    issue(store, c)
    entry = accepted(c["uuid"])
    assert store.record_feedback(service_id=SERVICE, items=[entry], client=None)["stored"] == 1
    again = store.record_feedback(service_id=SERVICE, items=[entry, entry], client=None)
    assert again == {"stored": 0, "duplicates": 2, "unknownCards": []}
    # The same instant written in another offset is the same feedback.
    same_instant = accepted(c["uuid"], when="2025-03-01T11:00:00+01:00")
    assert store.record_feedback(service_id=SERVICE, items=[same_instant], client=None)["duplicates"] == 1
    later = accepted(c["uuid"], when="2025-03-02T10:00:00Z")
    assert store.record_feedback(service_id=SERVICE, items=[later], client=None)["stored"] == 1
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Feedback)).scalar_one() == 2
    assert row_for(store.report(), "seizure-history")["feedbackReceived"] == 1  # one card


def test_unknown_card_is_stored_and_flagged(store: AuditStore) -> None:
    issued = card("seizure-history")
    issue(store, issued)
    stranger = str(uuid.uuid4())
    summary = store.record_feedback(
        service_id=SERVICE, items=[accepted(stranger), accepted(issued["uuid"])], client=None
    )
    assert summary == {"stored": 2, "duplicates": 0, "unknownCards": [stranger]}
    # A card issued by another service is unknown to this one.
    other = store.record_feedback(
        service_id="another-service", items=[overridden(issued["uuid"])], client=None
    )
    assert other["unknownCards"] == [issued["uuid"]]
    report = store.report()
    assert report["unknownCardFeedback"] == 2
    assert row_for(report, "seizure-history")["feedbackReceived"] == 1


def test_feedback_right_after_the_hook_call_finds_the_card(store: AuditStore) -> None:
    # The card write is queued; feedback must not race it and call the card unknown.
    c = card("seizure-history")
    issue(store, c)
    assert (
        store.record_feedback(service_id=SERVICE, items=[accepted(c["uuid"])], client=None)["unknownCards"]
        == []
    )


def test_report_since_filters_on_issue_time(store: AuditStore) -> None:
    old, new = card("seizure-history"), card("seizure-history")
    issue(store, old, new)
    store.record_feedback(service_id=SERVICE, items=[overridden(old["uuid"], "x")], client=None)
    with store.engine.begin() as conn:
        conn.execute(
            update(IssuedCard)
            .where(IssuedCard.card_uuid == old["uuid"])
            .values(issued_at=utcnow() - timedelta(days=30))
        )
    recent = store.report(since=utcnow() - timedelta(days=7))
    row = row_for(recent, "seizure-history")
    assert (row["cardsShown"], row["feedbackReceived"], row["overridden"]) == (1, 0, 0)
    assert row_for(store.report(), "seizure-history")["cardsShown"] == 2


def test_purge_removes_only_old_records(store: AuditStore) -> None:
    old, new = card("seizure-history"), card("seizure-history")
    issue(store, old, new)
    store.record_feedback(
        service_id=SERVICE, items=[accepted(old["uuid"]), accepted(new["uuid"])], client=None
    )
    long_ago = utcnow() - timedelta(days=500)
    with store.engine.begin() as conn:
        conn.execute(update(IssuedCard).where(IssuedCard.card_uuid == old["uuid"]).values(issued_at=long_ago))
        conn.execute(update(Feedback).where(Feedback.card_uuid == old["uuid"]).values(received_at=long_ago))
    assert store.purge(older_than_days=400) == 2
    assert store.purge(older_than_days=400) == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(IssuedCard.card_uuid)).scalars().all() == [new["uuid"]]
        assert conn.execute(select(Feedback.card_uuid)).scalars().all() == [new["uuid"]]


def test_close_drains_everything_queued(database_url: str, tmp_path: Path) -> None:
    store = make_store(database_url, tmp_path)
    for _ in range(300):
        issue(store, card("seizure-history"), card("dose-cap", "critical"))
    store.close(timeout=30)
    reopened = make_store(database_url, tmp_path)
    try:
        assert row_for(reopened.report(), "seizure-history")["cardsShown"] == 300
        assert row_for(reopened.report(), "dose-cap", "critical")["cardsShown"] == 300
    finally:
        reopened.close()


def test_responses_queued_together_are_written_in_one_statement(store: AuditStore) -> None:
    inserts: list[str] = []
    first_insert_running = threading.Event()
    release = threading.Event()

    def count(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO ISSUED_CARD"):
            inserts.append(statement)
            first_insert_running.set()
            release.wait(10)  # hold the writer while the next responses queue up

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        issue(store, card("seizure-history"), card("dose-cap", "critical"))
        assert first_insert_running.wait(10)
        for _ in range(49):
            issue(store, card("seizure-history"), card("dose-cap", "critical"))
        release.set()
        assert store.flush(10)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    # The first response alone, then the 49 that waited: two statements, not fifty.
    assert len(inserts) == 2
    assert row_for(store.report(), "seizure-history")["cardsShown"] == 50


def test_over_long_values_are_clipped_not_rejected(store: AuditStore) -> None:
    c = card("t" * 500)
    c["uuid"] = "u" * 300
    issue(store, c)
    summary = store.record_feedback(service_id=SERVICE, items=[overridden("u" * 300, "c" * 400)], client=None)
    assert summary["stored"] == 1
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(IssuedCard)).scalar_one() == 1


def test_unavailable_database_never_blocks_or_raises(
    tmp_path: Path, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{closed_port}/nothing"  # nothing listens there
    config = StorageConfig(database_url=url, data_dir=tmp_path)
    store = AuditStore(config, rule_version="0.1.0+test")
    failures_before = AUDIT_WRITE_FAILURES._value.get()
    caplog.set_level(logging.INFO)
    assert store.start() is False

    started = time.perf_counter()
    for _ in range(50):
        issue(store, card("seizure-history"))
    assert time.perf_counter() - started < 0.5
    deadline = time.monotonic() + 5
    while not store._writer.failing and time.monotonic() < deadline:  # the writer has met the outage
        time.sleep(0.01)

    started = time.perf_counter()
    summary = store.record_feedback(
        service_id=SERVICE, items=[overridden(str(uuid.uuid4()), "benefit")], client=None
    )
    assert summary == {"stored": 0, "duplicates": 0, "unknownCards": [], "queued": 1}
    assert time.perf_counter() - started < 0.9  # does not wait for the stuck queue
    store.close(timeout=1)
    assert AUDIT_WRITE_FAILURES._value.get() > failures_before
    assert store.pending() == 0
    logged = caplog.text
    assert "audit" in logged or "feedback" in logged
    assert PATIENT not in logged and COMMENT not in logged


def test_a_forked_worker_writes_with_its_own_connections(store: AuditStore) -> None:
    # gunicorn --preload: the app (and its store) is built in the master, then workers fork.
    issue(store, card("seizure-history"))
    assert store.flush(5)
    pid = os.fork()
    if pid == 0:  # child: record and drain, report success through the exit status
        code = 1
        try:
            issue(store, card("dose-cap", "critical"))
            store.close(timeout=10)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    report = store.report()
    assert row_for(report, "dose-cap", "critical")["cardsShown"] == 1
    assert row_for(report, "seizure-history")["cardsShown"] == 1


def test_a_full_queue_drops_and_counts_without_blocking(
    tmp_path: Path, closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{closed_port}/nothing"
    store = AuditStore(StorageConfig(database_url=url, data_dir=tmp_path, queue_size=5), rule_version="t")
    before = AUDIT_WRITE_FAILURES._value.get()
    caplog.set_level(logging.ERROR)
    started = time.perf_counter()
    for _ in range(50):
        issue(store, card("seizure-history"))
    assert time.perf_counter() - started < 0.5
    # At most 5 waiting in the queue plus the batch the worker took off it (at most 5 too) and retries.
    assert store.pending() <= 10
    assert AUDIT_WRITE_FAILURES._value.get() - before >= 40
    assert caplog.text.count("audit queue full") == 1  # rate-limited, not one line per record
    store.close(timeout=0.5)


def test_without_auto_upgrade_the_schema_comes_from_db_upgrade(database_url: str, tmp_path: Path) -> None:
    store = new_store(database_url, tmp_path, auto_upgrade=False)
    try:
        assert store.start() is False  # no tables yet, and the store may not create them
        assert "issued_card" not in inspect(store.engine).get_table_names()
        migrate.upgrade(store.engine)
        assert migrate.current_revision(store.engine) == HEAD
        assert store.start() is True
        issue(store, card("seizure-history"))
        assert row_for(store.report(), "seizure-history")["cardsShown"] == 1
    finally:
        store.close()


def test_migrations_downgrade_and_upgrade_again(store: AuditStore) -> None:
    with store.engine.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "base")
    assert not {"issued_card", "feedback", "store_meta"} & set(inspect(store.engine).get_table_names())
    migrate.upgrade(store.engine)
    assert migrate.current_revision(store.engine) == HEAD
