"""``AuditStore``: what the protocol layer calls to record cards and feedback."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Connection, DateTime, Engine, delete, func, select, text
from sqlalchemy.exc import OperationalError

from cds_service.config import ConfigError
from cds_service.metrics import (
    AUDIT_RECORDS_DROPPED,
    AUDIT_ROWS_REPLAYED,
    AUDIT_ROWS_SPILLED,
    AUDIT_WRITE_FAILURES,
    FEEDBACK_REFUSED,
)
from cds_service.storage import migrate, spill, suppression
from cds_service.storage.config import StorageConfig
from cds_service.storage.dialect import insert_ignore
from cds_service.storage.engine import make_engine, private_directory
from cds_service.storage.identity import existing_key, local_key, move_legacy_salt, patient_hash
from cds_service.storage.models import CardSuppression, Feedback, IssuedCard, StoreMeta
from cds_service.storage.report import ReasonDisplays, ReportScope, build_report
from cds_service.storage.suppression import keyed
from cds_service.storage.writer import AfterWrite, BackgroundWriter, InsertRows, Job, chunks

if TYPE_CHECKING:
    from cds_service.card_keys import CardKeys

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
        if config.is_sqlite:
            private_directory(config.data_dir)
        self.engine = engine or make_engine(config.database_url)
        self._key: str | None = config.patient_id_key
        self.clock: Callable[[], datetime] = utcnow  # tests move it past the suppression expiry
        self._ready = False
        self._ready_lock = threading.Lock()
        self._writer = BackgroundWriter(
            self.engine,
            prepare=self.prepare,
            probe=_probe,
            on_unwritten=self._spill,
            max_queue=config.queue_size,
        )

    # -- start-up ----------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Migrate (unless disabled) and settle the patient-id key; retried before each write until done.

        An older version's salt in ``store_meta`` is moved to the key file and deleted from the database.
        """
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            if self.config.auto_upgrade:
                migrate.upgrade(self.engine)
            with self.engine.begin() as conn:
                self._key = move_legacy_salt(conn, self._key, self.config.key_file)
            self._ready = True

    def start(self) -> bool:
        """Prepare now if the database answers (else the writer retries later); replay spill files.

        Never raises for the database: without it the patient-id key comes from configuration or the
        key file alone, and records wait in the queue.
        """
        try:
            self.prepare()
            ready = True
        except Exception as exc:
            AUDIT_WRITE_FAILURES.inc()
            log.error("audit database not ready at start-up (%s); writes will be retried", type(exc).__name__)
            ready = False
        if self._key is None:  # a broken key file stops the start, not the first hook call
            self._key = self._key_error_as_config(existing_key, None, self.config.key_file)
        self._replay()
        return ready

    def _patient_key(self) -> str:
        """The key; generated into the key file at the first card recorded without one."""
        if self._key is None:
            self._key = self._key_error_as_config(local_key, None, self.config.key_file)
        return self._key

    def _key_error_as_config(self, read: Callable[..., str | None], *args: Any) -> Any:
        try:
            return read(*args)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"the patient-id key file {self.config.key_file} cannot be read or created "
                f"({type(exc).__name__}); set CDS_PATIENT_ID_KEY_FILE to a readable key file"
            ) from exc

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
        keys: Mapping[str, CardKeys] | None = None,
        suppressed: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Queue the cards of one response. Never blocks on the database, never raises.

        ``keys``: each card's finding and order (by uuid), stored keyed; ``suppressed``: cards not shown
        because the clinician answered them at order-select, recorded with ``suppressed`` set."""
        try:
            if not cards and not suppressed:
                return
            now = utcnow()
            iss, tenant = _client(client)
            hidden = {str(card.get("uuid")) for card in suppressed}
            # One row per problem topic a card covers (its own first, under the card's uuid; the others
            # under "<uuid>#<topic>"), so that the report counts each problem of a merged dose card.
            rows = [
                {
                    "card_uuid": _clip(str(card.get("uuid") or "") + suffix, 128),
                    "service_id": _clip(service_id, 128),
                    "hook": _clip(hook, 64),
                    "hook_instance": _clip(str(hook_instance), 128),
                    "topic": _clip(topic, 128),
                    "indicator": _clip(card.get("indicator"), 16),
                    "issued_at": now,
                    "rule_version": _clip(self.rule_version, 64),
                    "client_iss": _clip(iss, 512),
                    "client_tenant": _clip(tenant, 256),
                }
                for card in [*cards, *suppressed]
                if card.get("uuid")  # a card without uuid can get no feedback; nothing to join on
                for suffix, topic in _covered(card)
            ]
            if not rows:
                return
            key = self._patient_key()
            digest = patient_hash(key, patient_id)  # the raw id never waits in a queue
            for row in rows:
                card_uuid = (row["card_uuid"] or "").split("#", 1)[0]  # a covered topic's row: its card's
                card_keys = (keys or {}).get(card_uuid)
                row["patient_hash"] = digest
                row["finding_key"] = keyed(key, patient_id, card_keys.finding if card_keys else None)
                row["order_key"] = keyed(key, patient_id, card_keys.order if card_keys else None)
                row["suppressed"] = card_uuid in hidden
            self._writer.submit(InsertRows(IssuedCard, tuple(rows)))
        except Exception as exc:  # the hook response must go out whatever happens here
            AUDIT_WRITE_FAILURES.inc()
            log.error("could not queue audit record (%s)", type(exc).__name__)

    # -- no repeats at signing ----------------------------------------------------------------------
    @property
    def suppression_enabled(self) -> bool:
        return self.config.sign_suppression

    def answered_at_select(self, patient_id: str | None, keys: Mapping[str, CardKeys]) -> set[str]:
        """The cards (by uuid) whose finding the clinician accepted or overrode at order-select, not
        expired. Empty when off, without a patient id, or when the database cannot be read: the card is
        shown again rather than hidden on a guess (one indexed query; never raises)."""
        if not self.config.sign_suppression or not patient_id or not keys or self._writer.failing:
            return set()
        try:
            if not self._ready:
                return set()
            key = self._patient_key()
            wanted = {card: k for card, ck in keys.items() if (k := keyed(key, patient_id, ck.finding))}
            with self.engine.connect() as conn:
                return suppression.suppressed(conn, wanted, self.clock())
        except Exception as exc:
            AUDIT_WRITE_FAILURES.inc()
            log.error("could not read answered cards (%s); shown again", type(exc).__name__)
            return set()

    def _remember_answered(self, card_uuids: set[str]) -> None:
        if not self.config.sign_suppression or not card_uuids:
            return
        try:
            with self.engine.begin() as conn:
                suppression.remember_answered(
                    conn, card_uuids, self.clock(), self.config.sign_suppression_hours
                )
        except Exception as exc:  # the feedback is stored; the card is only shown again at signing
            log.error("could not record answered cards (%s)", type(exc).__name__)

    # -- feedback ----------------------------------------------------------------------------------
    def record_feedback(self, *, service_id: str, items: list[dict[str, Any]], client: object | None) -> dict:
        """Store validated feedback entries idempotently; on a database failure queue them for retry.

        Entries for a card issued to another client (``iss`` and ``tenant``) are not stored: to this
        client such a card is unknown, and it is listed in ``unknownCards`` (counted in
        ``cds_feedback_entries_refused_total``).
        """
        now = utcnow()
        iss, tenant = _client(client)
        rows: dict[str, dict[str, Any]] = {}
        for item in items:
            row = _feedback_row(item, service_id=service_id, received_at=now, iss=iss, tenant=tenant)
            rows.setdefault(row["dedupe_key"], row)
        cards = sorted({row["card_uuid"] for row in rows.values()})
        in_request_duplicates = len(items) - len(rows)
        job = FeedbackRows(service_id, _clip(iss, 512), _clip(tenant, 256), tuple(rows.values()))
        try:
            if not self._writer.failing:  # during an outage waiting for the queue would only add delay
                self._writer.flush(_FEEDBACK_FLUSH_SECONDS)
            self.prepare()
            with self.engine.begin() as conn:
                written = job(conn)
        except Exception as exc:
            AUDIT_WRITE_FAILURES.inc()
            log.error("feedback write failed (%s); %d entries queued", type(exc).__name__, len(rows))
            self._writer.submit(job)
            return {"stored": 0, "duplicates": 0, "unknownCards": [], "queued": len(rows)}
        self._remember_answered(written.mine)
        kept = len(rows) - written.refused_entries
        return {
            "stored": written.stored,
            "duplicates": kept - written.stored + in_request_duplicates,
            "unknownCards": [card for card in cards if card not in written.mine],
        }

    # -- reports and maintenance -------------------------------------------------------------------
    def report(
        self,
        *,
        since: datetime | None = None,
        scope: ReportScope | None = None,
        reason_displays: ReasonDisplays | None = None,
    ) -> dict[str, Any]:
        if not self._writer.failing:
            self._writer.flush(_FEEDBACK_FLUSH_SECONDS)
        self.prepare()
        return build_report(
            self.engine,
            since=since,
            rule_version=self.rule_version,
            scope=scope,
            reason_displays=reason_displays,
        )

    def count_older_than(self, *, older_than_days: int) -> tuple[int, int]:
        """(cards, feedback entries) that ``purge`` would delete; reads only, never migrates."""
        cutoff = utcnow() - timedelta(days=older_than_days)
        with self.engine.connect() as conn:
            cards = conn.execute(
                select(func.count()).select_from(IssuedCard).where(IssuedCard.issued_at < cutoff)
            ).scalar_one()
            feedback = conn.execute(
                select(func.count()).select_from(Feedback).where(Feedback.received_at < cutoff)
            ).scalar_one()
        return int(cards), int(feedback)

    def purge(self, *, older_than_days: int) -> int:
        """Delete cards and feedback older than the given number of days; returns rows deleted."""
        self.prepare()
        cutoff = utcnow() - timedelta(days=older_than_days)
        with self.engine.begin() as conn:
            cards = conn.execute(delete(IssuedCard).where(IssuedCard.issued_at < cutoff)).rowcount
            feedback = conn.execute(delete(Feedback).where(Feedback.received_at < cutoff)).rowcount
            conn.execute(delete(CardSuppression).where(CardSuppression.expires_at <= utcnow()))
        log.info("purged %d cards and %d feedback entries (> %d days)", cards, feedback, older_than_days)
        return cards + feedback

    def pending(self) -> int:
        return self._writer.pending()

    def flush(self, timeout: float = 5.0) -> bool:
        return self._writer.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue (at most ``timeout`` seconds; the rest goes to the spill file) and release
        connections. Safe to call twice."""
        self._writer.close(timeout)
        self.engine.dispose()

    # -- the spill file ----------------------------------------------------------------------------
    def _spill(self, jobs: list[Job]) -> None:
        """Keep what a stop left unwritten in a spill file; the next start replays it."""
        records = [record for job in jobs if (record := _to_record(job)) is not None]
        rows, dropped = spill.write_spill(self.config.spill_path, records, self.config.spill_max_bytes)
        if dropped:
            AUDIT_RECORDS_DROPPED.labels(reason="spill_full").inc(dropped)
            log.error("audit spill folder full (CDS_AUDIT_SPILL_MAX_BYTES): %d records dropped", dropped)
        if rows:
            AUDIT_ROWS_SPILLED.inc(rows)
            log.warning("%d unwritten audit rows kept in %s for the next start", rows, self.config.spill_path)
        if dropped:
            return  # the files being replayed keep what did not fit (a record read twice is stored once)
        # Records replayed from older files are in the new file now (or were written): those files go.
        for job in jobs:
            if isinstance(job, AfterWrite):
                job.action()

    def _replay(self) -> None:
        """Queue the records of every spill file left by an earlier stop; each file goes once written."""
        try:
            claimed = spill.claim_spill_files(self.config.spill_path)
            for path in claimed:
                jobs = [job for record in spill.read_spill(path) if (job := _from_record(record)) is not None]
                for job in jobs:
                    self._writer.submit(job, force=True)
                self._writer.submit(AfterWrite(functools.partial(spill.remove, path)), force=True)
                AUDIT_ROWS_REPLAYED.inc(sum(job.rows for job in jobs))
                log.warning("replaying %d audit records kept at an earlier stop (%s)", len(jobs), path.name)
        except Exception as exc:  # a broken spill folder must not stop the service
            log.error("could not replay the audit spill folder (%s)", type(exc).__name__)


@dataclass(frozen=True)
class FeedbackWritten:
    stored: int
    mine: set[str]  # cards of this service issued to this client
    refused_entries: int  # entries for cards issued to another client


@dataclass(frozen=True)
class FeedbackRows:
    """The entries of one feedback POST, for one client: a writer job, replayable from a spill file."""

    table: ClassVar[str] = "feedback"
    service_id: str
    iss: str | None
    tenant: str | None
    values: tuple[dict[str, Any], ...]

    @property
    def rows(self) -> int:
        return len(self.values)

    def __call__(self, conn: Connection) -> FeedbackWritten:
        owners: dict[str, tuple[str | None, str | None]] = {}
        uuids = sorted({row["card_uuid"] for row in self.values})
        for chunk in chunks(uuids):
            query = select(IssuedCard.card_uuid, IssuedCard.client_iss, IssuedCard.client_tenant).where(
                IssuedCard.card_uuid.in_(chunk), IssuedCard.service_id == self.service_id
            )
            owners.update(
                {card: (card_iss, card_tenant) for card, card_iss, card_tenant in conn.execute(query)}
            )
        mine = {card for card, owner in owners.items() if owner == (self.iss, self.tenant)}
        values = [
            {**row, "card_known": row["card_uuid"] in mine}
            for row in self.values
            if row["card_uuid"] in mine or row["card_uuid"] not in owners
        ]
        refused = len(self.values) - len(values)
        if refused:
            FEEDBACK_REFUSED.labels(reason="other_client").inc(refused)
            log.warning("feedback for cards issued to another client refused (%d entries)", refused)
        statement = insert_ignore(conn, Feedback).returning(Feedback.dedupe_key)
        stored = sum(len(conn.execute(statement, list(chunk)).all()) for chunk in chunks(values))
        return FeedbackWritten(stored, mine, refused)


def _probe(conn: Connection) -> None:
    """Raises unless the database takes writes and has the audit tables (then a failing job is to blame).

    Needs no privilege beyond the service's own: SQLite has none (a no-op DELETE takes its write lock,
    which a locked or read-only file refuses); PostgreSQL says whether the session is read-only.
    """
    conn.execute(select(IssuedCard.id).limit(0))
    conn.execute(select(Feedback.id).limit(0))
    if conn.dialect.name == "sqlite":
        conn.execute(delete(StoreMeta).where(StoreMeta.key == "-write-probe-"))
    elif conn.execute(text("SHOW transaction_read_only")).scalar() == "on":
        raise OperationalError("SHOW transaction_read_only", {}, RuntimeError("read-only database"))


_MODELS: dict[str, type] = {"issued_card": IssuedCard}


def _to_record(job: Job) -> dict[str, Any] | None:
    if isinstance(job, InsertRows) and job.table in _MODELS:
        return {"kind": job.table, "rows": list(job.values)}
    if isinstance(job, FeedbackRows):
        return {
            "kind": "feedback",
            "service_id": job.service_id,
            "iss": job.iss,
            "tenant": job.tenant,
            "rows": list(job.values),
        }
    return None


def _from_record(record: dict[str, Any]) -> Job | None:
    kind = record.get("kind")
    rows = record.get("rows")
    if not isinstance(rows, list) or not rows:
        return None
    if kind in _MODELS:
        model = _MODELS[kind]
        return InsertRows(model, tuple(_times(model, row) for row in rows))
    if kind == "feedback":
        values = tuple(_times(Feedback, row) for row in rows)
        return FeedbackRows(str(record.get("service_id")), record.get("iss"), record.get("tenant"), values)
    return None


@functools.cache
def _time_columns(model: type) -> frozenset[str]:
    table = model.__table__  # type: ignore[attr-defined]
    return frozenset(column.name for column in table.columns if isinstance(column.type, DateTime))


def _times(model: type, row: dict[str, Any]) -> dict[str, Any]:
    """A spilled row with its times parsed back (JSON has no datetime)."""
    names = _time_columns(model)
    return {k: datetime.fromisoformat(v) if k in names and isinstance(v, str) else v for k, v in row.items()}


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


def _covered(card: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(uuid suffix, topic) per problem topic of a card: "" for its own, "#<topic>" for each covered one."""
    own = _topic(card)
    listed = (card.get("extension") or {}).get("amifampridine-cds.topics")
    others = [t for t in listed if isinstance(t, str) and t != own] if isinstance(listed, list) else []
    return [("", own), *((f"#{topic}", topic) for topic in dict.fromkeys(others))]


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
