"""The audit counts each problem a merged card covers (one dose card per order, issue 17): one row per
topic of the card's "amifampridine-cds.topics" extension, feedback on the card counted for its own topic."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cds_service.storage.config import StorageConfig
from cds_service.storage.models import IssuedCard
from cds_service.storage.store import AuditStore

pytest_plugins = ["conftest_postgres"]  # the database_url fixture: SQLite, and PostgreSQL when enabled
SERVICE = "amifampridine-order-sign"


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[AuditStore]:
    store = AuditStore(StorageConfig(database_url=database_url, data_dir=tmp_path), rule_version="test")
    assert store.start()
    yield store
    store.close(timeout=5)


def dose_card(*covers: str) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "summary": "s",
        "indicator": "critical",
        "source": {"label": "FIRDAPSE", "topic": {"system": "urn:x", "code": covers[0]}},
        "extension": {"amifampridine-cds.topics": list(covers)},
    }


def test_each_covered_topic_is_counted_and_feedback_goes_to_the_cards_own_topic(store: AuditStore) -> None:
    card = dose_card("dose-daily-max", "dose-single-max", "starting-dose")
    plain = dose_card("dose-single-max")
    store.record_response(
        service_id=SERVICE,
        hook="order-sign",
        hook_instance=str(uuid.uuid4()),
        patient_id="patient-1",
        cards=[card, plain],
        client=None,
    )
    assert store.flush(5)
    with store.engine.connect() as conn:
        rows = conn.execute(select(IssuedCard.card_uuid, IssuedCard.topic)).all()
    assert sorted((u, t) for u, t in rows if u.startswith(card["uuid"])) == [
        (card["uuid"], "dose-daily-max"),
        (f"{card['uuid']}#dose-single-max", "dose-single-max"),
        (f"{card['uuid']}#starting-dose", "starting-dose"),
    ]
    store.record_feedback(
        service_id=SERVICE,
        items=[{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-12-01T10:00:00Z"}],
        client=None,
    )
    assert store.flush(5)
    shown = {row["topic"]: row for row in store.report()["rows"]}
    assert shown["dose-daily-max"]["cardsShown"] == 1 and shown["starting-dose"]["cardsShown"] == 1
    assert shown["dose-single-max"]["cardsShown"] == 2  # covered by one card, the topic of another
    assert shown["dose-daily-max"]["overridden"] == 1 and shown["starting-dose"]["overridden"] == 0
