"""``AuditStore``: what the protocol layer calls to record cards and feedback."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, select

from cds_service.metrics import AUDIT_WRITE_FAILURES
from cds_service.storage import migrate
from cds_service.storage.config import StorageConfig
from cds_service.storage.dialect import insert_ignore
from cds_service.storage.engine import make_engine
from cds_service.storage.identity import load_or_create_salt, patient_hash
from cds_service.storage.models import Feedback, IssuedCard
from cds_service.storage.report import ReportScope, build_report
from cds_service.storage.writer import BackgroundWriter, InsertRows

log = logging.getLogger("cds_service.storage")

# How long feedback waits for this process's queued cards, so feedback right after a hook call finds them.
_FEEDBACK_FLUSH_SECONDS = 1.0


def utcnow() -> datetime:
    """Naive UTC, the convention of every stored time."""
    return datetime.now(UTC).replace(tzinfo=None)


class AuditStore:
    def __init__(self, config: StorageConfig, *, rule_version: str, engine: Engine | None = None) -> None:
        self.config = config
        self.rule_version = rule_version
        self.engine = engine or make_engine(config.database_url)
        self._salt = config.patient_id_salt
        self._ready = False
        self._ready_lock = threading.Lock()
        self._writer = BackgroundWriter(self.engine, prepare=self.prepare, max_queue=config.queue_size)

    # -- start-up ----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Migrate (unless disabled) and load the salt; retried before each write until it succeeds."""
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            if self.config.auto_upgrade:
                migrate.upgrade(self.engine)
            if self._salt is None:
                with self.engine.begin() as conn:
                    self._salt = load_or_create_salt(conn)
            self._ready = True

    def start(self) -> bool:
        """Prepare now if the database answers; otherwise the writer retries later. Never raises."""
        try:
            self.prepare()
            return True
        except Exception as exc:
            AUDIT_WRITE_FAILURES.inc()
            log.error("audit database not ready at start-up (%s); writes will be retried", type(exc).__name__)
            return False

    # -- hook responses ----------------------------------------------------------------------------
    def record_response(
        self,
        *,
        service_id: str,
        hook: str,
        hook_instance: str,
        patient_id: str | None,
        cards: list[dict[str, Any]],
        client: object | None,
    ) -> None:
        """Queue the cards of one response. Never blocks on the database, never raises."""
        try:
            if not cards:
                return
            now = utcnow()
            iss, tenant = _client(client)
            rows = [
                {
                    "card_uuid": _clip(str(card.get("uuid") or ""), 128),
                    "service_id": _clip(service_id, 128),
                    "hook": _clip(hook, 64),
                    "hook_instance": _clip(str(hook_instance), 128),
                    "topic": _clip(_topic(card), 128),
                    "indicator": _clip(card.get("indicator"), 16),
                    "issued_at": now,
                    "rule_version": _clip(self.rule_version, 64),
                    "client_iss": _clip(iss, 512),
                    "client_tenant": _clip(tenant, 256),
                }
                for card in cards
                if card.get("uuid")  # a card without uuid can get no feedback; nothing to join on
            ]
            if not rows:
                return
            # Hash now when the salt is known, so the raw id does not wait in memory.
            hashed = patient_hash(self._salt, patient_id) if self._salt else None

            def values() -> list[dict[str, Any]]:
                digest = hashed if hashed or not patient_id else patient_hash(self._salt or "", patient_id)
                return [{**row, "patient_hash": digest} for row in rows]

            self._writer.submit(InsertRows(IssuedCard, values))
        except Exception as exc:  # the hook response must go out whatever happens here
            AUDIT_WRITE_FAILURES.inc()
            log.error("could not queue audit record (%s)", type(exc).__name__)

    # -- feedback ----------------------------------------------------------------------------------
    def record_feedback(self, *, service_id: str, items: list[dict[str, Any]], client: object | None) -> dict:
        """Store validated feedback entries idempotently; on a database failure queue them for retry."""
        now = utcnow()
        iss, tenant = _client(client)
        rows: dict[str, dict[str, Any]] = {}
        for item in items:
            row = _feedback_row(item, service_id=service_id, received_at=now, iss=iss, tenant=tenant)
            rows.setdefault(row["dedupe_key"], row)
        cards = sorted({row["card_uuid"] for row in rows.values()})
        in_request_duplicates = len(items) - len(rows)
        try:
            if not self._writer.failing:  # during an outage waiting for the queue would only add delay
                self._writer.flush(_FEEDBACK_FLUSH_SECONDS)
            self.prepare()
            with self.engine.begin() as conn:
                stored, known = _write_feedback(conn, service_id, list(rows.values()))
        except Exception as exc:
            AUDIT_WRITE_FAILURES.inc()
            log.error("feedback write failed (%s); %d entries queued", type(exc).__name__, len(rows))
            pending = list(rows.values())
            self._writer.submit(lambda conn: _write_feedback(conn, service_id, pending))
            return {"stored": 0, "duplicates": 0, "unknownCards": [], "queued": len(rows)}
        return {
            "stored": stored,
            "duplicates": len(rows) - stored + in_request_duplicates,
            "unknownCards": [card for card in cards if card not in known],
        }

    # -- reports and maintenance -------------------------------------------------------------------
    def report(self, *, since: datetime | None = None, scope: ReportScope | None = None) -> dict[str, Any]:
        if not self._writer.failing:
            self._writer.flush(_FEEDBACK_FLUSH_SECONDS)
        self.prepare()
        return build_report(self.engine, since=since, rule_version=self.rule_version, scope=scope)

    def purge(self, *, older_than_days: int) -> int:
        """Delete cards and feedback older than the given number of days; returns rows deleted."""
        self.prepare()
        cutoff = utcnow() - timedelta(days=older_than_days)
        with self.engine.begin() as conn:
            cards = conn.execute(delete(IssuedCard).where(IssuedCard.issued_at < cutoff)).rowcount
            feedback = conn.execute(delete(Feedback).where(Feedback.received_at < cutoff)).rowcount
        log.info("purged %d cards and %d feedback entries (> %d days)", cards, feedback, older_than_days)
        return cards + feedback

    def pending(self) -> int:
        return self._writer.pending()

    def flush(self, timeout: float = 5.0) -> bool:
        return self._writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue (at most ``timeout`` seconds) and release connections. Safe to call twice."""
        self._writer.close(timeout)
        self.engine.dispose()


def _write_feedback(conn: Connection, service_id: str, rows: list[dict[str, Any]]) -> tuple[int, set[str]]:
    """Insert new entries; returns (rows inserted, card uuids this service issued)."""
    uuids = {row["card_uuid"] for row in rows}
    known = set(
        conn.execute(
            select(IssuedCard.card_uuid).where(
                IssuedCard.card_uuid.in_(uuids), IssuedCard.service_id == service_id
            )
        ).scalars()
    )
    values = [{**row, "card_known": row["card_uuid"] in known} for row in rows]
    inserted = conn.execute(insert_ignore(conn, Feedback).returning(Feedback.dedupe_key), values).all()
    return len(inserted), known


def _feedback_row(
    item: dict[str, Any], *, service_id: str, received_at: datetime, iss: str | None, tenant: str | None
) -> dict[str, Any]:
    card = str(item["card"])
    outcome = str(item["outcome"])
    raw_time = str(item.get("outcomeTimestamp") or "")
    outcome_at = _parse_time(raw_time)
    # The same instant written two ways (Z vs +00:00) is the same feedback.
    time_key = outcome_at.isoformat() if outcome_at else raw_time
    dedupe_key = hashlib.sha256(f"{card}\0{outcome}\0{time_key}".encode()).hexdigest()
    override = item.get("overrideReason") or {}
    reason = override.get("reason") or {}
    suggestions = [str(s.get("id")) for s in item.get("acceptedSuggestions") or [] if isinstance(s, dict)]
    return {
        "dedupe_key": dedupe_key,
        "card_uuid": _clip(card, 128),
        "service_id": _clip(service_id, 128),
        "outcome": _clip(outcome, 16),
        "accepted_suggestions": json.dumps(suggestions) if suggestions else None,
        "override_code": _clip(reason.get("code"), 256),
        "override_system": _clip(reason.get("system"), 512),
        "override_display": _clip(reason.get("display"), 512),
        "user_comment": override.get("userComment"),
        "outcome_at": outcome_at,
        "received_at": received_at,
        "client_iss": _clip(iss, 512),
        "client_tenant": _clip(tenant, 256),
    }


def _parse_time(raw: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _topic(card: dict[str, Any]) -> str | None:
    source = card.get("source") or {}
    topic = source.get("topic") or {}
    return topic.get("code") if isinstance(topic, dict) else None


def _client(client: object | None) -> tuple[str | None, str | None]:
    if client is None:
        return None, None
    return getattr(client, "iss", None), getattr(client, "tenant", None)


def _clip(value: Any, length: int) -> str | None:
    # Column limits are enforced by PostgreSQL; an over-long value must not make a write fail forever.
    if value is None:
        return None
    text = str(value)
    return text[:length]
