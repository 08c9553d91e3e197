"""The audit writer under hostile input and faults (issue 15, items 1 and 9): no job can stop the queue,
an outage sets nothing aside, and a stop during an outage keeps the queued rows for the next start."""

from __future__ import annotations

import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Connection, event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.metrics import AUDIT_RECORDS_DROPPED, AUDIT_ROWS_SET_ASIDE
from cds_service.storage.config import StorageConfig
from cds_service.storage.models import Feedback, IssuedCard
from cds_service.storage.store import AuditStore, FeedbackRows, _feedback_row, utcnow
from cds_service.storage.writer import CHUNK, Failure, classify

pytest_plugins = ["conftest_postgres"]

SERVICE = "amifampridine-order-sign"


# SQLite's default bind-parameter limit since 3.32 (this build allows more): what most hosts run.
SQLITE_VARIABLE_LIMIT = 32_766


def _sqlite_default_limit(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, SQLITE_VARIABLE_LIMIT)


def make_store(url: str, tmp_path: Path, **overrides: Any) -> AuditStore:
    store = AuditStore(StorageConfig(database_url=url, data_dir=tmp_path, **overrides), rule_version="t")
    if store.engine.dialect.name == "sqlite":
        event.listen(store.engine, "connect", _sqlite_default_limit)
    assert store.start()
    return store


def card() -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "indicator": "warning",
        "source": {"label": "x", "topic": {"system": "urn:x", "code": "seizure-history"}},
    }


def issue(store: AuditStore, n: int = 1) -> list[str]:
    cards = [card() for _ in range(n)]
    store.record_response(
        service_id=SERVICE,
        hook="order-sign",
        hook_instance=str(uuid.uuid4()),
        patient_id="patient-1",
        cards=cards,
        client=None,
    )
    return [c["uuid"] for c in cards]


def count(store: AuditStore, model: type) -> int:
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def accepted(card_uuid: str) -> dict[str, Any]:
    return {
        "card": card_uuid,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "s"}],
        "outcomeTimestamp": "2025-03-01T10:00:00Z",
    }


class FailingJob:
    """A job the database refuses every time, with the given error."""

    table = "issued_card"
    rows = 3

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.attempts = 0

    def __call__(self, conn: Connection) -> None:
        self.attempts += 1
        raise self.error


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[AuditStore]:
    store = make_store(database_url, tmp_path)
    yield store
    store.close(timeout=5)


def test_feedback_with_more_ids_than_any_parameter_limit_is_written_and_so_are_later_cards(
    store: AuditStore,
) -> None:
    # Past the HTTP bound (100 entries) nothing this large arrives; the store must cope all the same.
    issued = issue(store)
    ids = issued + [str(uuid.uuid4()) for _ in range(65_599)]
    summary = store.record_feedback(service_id=SERVICE, items=[accepted(i) for i in ids], client=None)
    assert summary["stored"] == 65_600 and "queued" not in summary
    later = [i for _ in range(30) for i in issue(store, 3)]
    assert store.flush(30)
    assert count(store, IssuedCard) == 1 + len(later) == 91
    assert count(store, Feedback) == 65_600


def test_a_queued_job_larger_than_a_chunk_is_written(store: AuditStore) -> None:
    # The queued form of a feedback POST (what the writer retries when the first attempt failed).
    entries = [accepted(str(uuid.uuid4())) for _ in range(3 * CHUNK + 7)]
    now = utcnow()
    rows = [_feedback_row(e, service_id=SERVICE, received_at=now, iss=None, tenant=None) for e in entries]
    job = FeedbackRows(SERVICE, None, None, tuple(rows))
    assert store._writer.submit(job)
    issue(store, 2)
    assert store.flush(30)
    assert count(store, Feedback) == len(entries)
    assert count(store, IssuedCard) == 2


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("INSERT", {}, Exception("NOT NULL constraint failed")),
        # An OperationalError without a code, as psycopg raises for more than 65,535 parameters: the
        # writer used to retry it for ever.
        OperationalError("SELECT", {}, Exception("number of parameters must be between 0 and 65535")),
    ],
    ids=["permanent", "unclassified"],
)
def test_a_job_the_database_keeps_refusing_is_set_aside_and_later_jobs_are_written(
    store: AuditStore, error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    before = AUDIT_ROWS_SET_ASIDE._value.get()
    first = issue(store, 2)
    bad = FailingJob(error)
    store._writer.submit(bad)
    later = issue(store, 5)
    assert store.flush(30)
    assert count(store, IssuedCard) == len(first) + len(later)
    assert AUDIT_ROWS_SET_ASIDE._value.get() - before == bad.rows
    assert store._writer.set_aside == bad.rows
    assert "audit job set aside" in caplog.text and "patient-1" not in caplog.text


@contextmanager
def sqlite_locked(store: AuditStore) -> Iterator[None]:
    """Hold SQLite's write lock from another connection: to the writer, an outage."""
    path = store.engine.url.database
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_an_outage_sets_nothing_aside(tmp_path: Path) -> None:
    store = make_store(f"sqlite:///{tmp_path / 'cds.sqlite3'}", tmp_path)
    store.engine.dispose()
    try:
        with sqlite_locked(store):
            cards = issue(store, 4)
            deadline = time.monotonic() + 10
            while not store._writer.failing and time.monotonic() < deadline:
                time.sleep(0.05)
            assert store._writer.failing
        assert store.flush(30)
        assert store._writer.set_aside == 0
        with store.engine.connect() as conn:
            assert set(conn.execute(select(IssuedCard.card_uuid)).scalars()) == set(cards)
    finally:
        store.close(timeout=5)


def test_a_stop_during_an_outage_spills_and_the_next_start_replays(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    spill_dir = tmp_path / "audit-spill"
    store = make_store(url, tmp_path)
    store.engine.dispose()
    with sqlite_locked(store):
        cards = [i for _ in range(40) for i in issue(store, 3)]
        feedback = store.record_feedback(service_id=SERVICE, items=[accepted(cards[0])], client=None)
        assert feedback["queued"] == 1
        store.close(timeout=1)  # the database is still locked: nothing can be written
        files = list(spill_dir.glob("audit-spill-*.jsonl"))
        assert len(files) == 1
        assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
        assert stat.S_IMODE(spill_dir.stat().st_mode) == 0o700
        assert "patient-1" not in files[0].read_text()
    assert count(store, IssuedCard) == 0

    again = make_store(url, tmp_path)
    try:
        assert again.flush(30)
        with again.engine.connect() as conn:
            assert set(conn.execute(select(IssuedCard.card_uuid)).scalars()) == set(cards)
            assert conn.execute(select(Feedback.card_uuid)).scalars().all() == [cards[0]]
            assert conn.execute(select(Feedback.card_known)).scalar_one() is True
        deadline = time.monotonic() + 5
        while list(spill_dir.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(spill_dir.iterdir()) == []  # replayed, then deleted
    finally:
        again.close()


def test_the_spill_folder_is_bounded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    store = make_store(url, tmp_path, spill_max_bytes=2000)
    store.engine.dispose()
    dropped = AUDIT_RECORDS_DROPPED.labels(reason="spill_full")
    before = dropped._value.get()
    with sqlite_locked(store):
        for _ in range(20):
            issue(store, 3)
        store.close(timeout=1)
    spilled = sum(p.stat().st_size for p in (tmp_path / "audit-spill").iterdir())
    assert 0 < spilled <= 2000
    assert dropped._value.get() > before  # what did not fit is counted


def test_two_workers_starting_at_once_replay_a_spill_file_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cds.sqlite3'}"
    store = make_store(url, tmp_path)
    store.engine.dispose()
    with sqlite_locked(store):
        cards = issue(store, 6)
        store.close(timeout=1)
    stores: list[AuditStore] = []
    threads = [threading.Thread(target=lambda: stores.append(make_store(url, tmp_path))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        for s in stores:
            assert s.flush(30)
        with stores[0].engine.connect() as conn:
            assert sorted(conn.execute(select(IssuedCard.card_uuid)).scalars()) == sorted(cards)
    finally:
        for s in stores:
            s.close()


def test_errors_are_classified_by_what_they_say_about_the_rows(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.sqlite3")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, SQLITE_VARIABLE_LIMIT)
    params = ",".join("?" * 40_000)
    with pytest.raises(sqlite3.OperationalError) as too_many:
        conn.execute(f"SELECT 1 WHERE 1 IN ({params})", list(range(40_000)))
    assert classify(OperationalError("s", {}, too_many.value)) is Failure.PERMANENT
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorname = "SQLITE_BUSY"  # type: ignore[attr-defined]
    assert classify(OperationalError("s", {}, locked)) is Failure.OUTAGE
    assert classify(IntegrityError("s", {}, Exception())) is Failure.PERMANENT
    assert classify(OperationalError("s", {}, Exception("connection refused"))) is Failure.UNSURE
    assert classify(TypeError("bad row")) is Failure.PERMANENT


def test_metrics_show_the_audit_queue(tmp_path: Path) -> None:
    app: Flask = create_app(Settings.from_env({"CDS_AUTH": "off", "CDS_DATA_DIR": str(tmp_path / "data")}))
    text = app.test_client().get("/metrics").get_data(as_text=True)
    for name in (
        "cds_audit_queue_depth",
        'cds_audit_records_dropped_total{reason="queue_full"}',
        "cds_audit_rows_set_aside_total",
        "cds_audit_rows_spilled_total",
        "cds_audit_rows_replayed_total",
        "cds_feedback_entries_refused_total",
    ):
        assert name in text
