"""Background writer: the hook response never waits for the database, and no input can stop the writer.

Jobs go on a bounded queue; one worker thread writes them in batches. Every failure is classified:

- an *outage* (connection refused or lost, SQLite busy, locked, read-only or full, PostgreSQL shutting
  down...) says nothing about the rows: the batch is retried with backoff for as long as it lasts;
- a *permanent* error (IntegrityError, DataError, ProgrammingError, a statement the data made invalid,
  SQLite's "too many SQL variables"...) is the batch's fault;
- anything else (an ``OperationalError`` without a known code) is retried a few times, then treated as the
  batch's fault.

A batch at fault is split in halves until the job to blame is alone; that job is set aside (counted in
``cds_audit_rows_set_aside_total``, logged with its table, row count and error type, never row contents)
and the queue moves on. Nothing is set aside while the database fails a health probe: then it is the
database that is down, and the batch waits. Statements are chunked (``CHUNK``) far below every
database's bind-parameter limit.

``close(timeout)`` drains what is queued; what is still unwritten after ``timeout`` (the database is down)
goes to ``on_unwritten``, which the store writes to a spill file that the next start replays.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from cds_service.metrics import (
    AUDIT_QUEUE_DEPTH,
    AUDIT_RECORDS_DROPPED,
    AUDIT_ROWS_SET_ASIDE,
    AUDIT_WRITE_FAILURES,
)
from cds_service.storage.dialect import insert_ignore

log = logging.getLogger("cds_service.storage")

# Rows per INSERT and values per IN (...): 500 x 15 columns stays below SQLite's 32,766 and PostgreSQL's
# 65,535 bind parameters, and an IN list of 500 below even old SQLite builds' 999.
CHUNK = 500


class Job(Protocol):
    """Work for the writer: ``table`` and ``rows`` name it in logs and metrics (never its contents)."""

    table: str

    @property
    def rows(self) -> int: ...

    def __call__(self, conn: Connection) -> Any: ...


@dataclass(frozen=True)
class InsertRows:
    """Insert rows into one table, skipping duplicates (so writing a job twice is harmless).

    The writer merges the InsertRows of one batch that target the same table: one round trip per chunk
    instead of one per hook response.
    """

    model: type
    values: tuple[dict[str, Any], ...]

    @property
    def table(self) -> str:
        return str(self.model.__tablename__)  # type: ignore[attr-defined]

    @property
    def rows(self) -> int:
        return len(self.values)

    def __call__(self, conn: Connection) -> None:
        statement = insert_ignore(conn, self.model)
        for chunk in chunks(self.values):
            conn.execute(statement, list(chunk))

    @staticmethod
    def merged(jobs: Sequence[InsertRows]) -> InsertRows:
        return InsertRows(jobs[0].model, tuple(row for job in jobs for row in job.values))


@dataclass(frozen=True)
class AfterWrite:
    """Not database work: ``action`` runs once every job queued before it is written or set aside."""

    action: Callable[[], None]
    table: str = "-"
    rows: int = 0

    def __call__(self, conn: Connection) -> None:  # pragma: no cover - never sent to the database
        raise TypeError("AfterWrite is run by the writer, not in a transaction")


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class Failure(enum.Enum):
    OUTAGE = "outage"  # the database, not the rows: wait
    PERMANENT = "permanent"  # the rows: isolate and set aside
    UNSURE = "unsure"  # retry a few times, then treat as permanent


# SQLite result codes (primary part of the extended name) that come from the environment, not the rows.
_SQLITE_OUTAGE = frozenset(
    {"BUSY", "LOCKED", "FULL", "IOERR", "READONLY", "CANTOPEN", "NOMEM", "PROTOCOL", "INTERRUPT", "NOLFS"}
)
# PostgreSQL SQLSTATE classes / codes of the same kind: connection, resources, operator intervention,
# system errors, serialization and deadlocks, a read-only standby, a lock not available, access rights.
_PG_OUTAGE_CLASSES = frozenset({"08", "53", "57", "58", "40", "28", "3D", "F0", "XX"})
_PG_OUTAGE_CODES = frozenset({"25006", "55P03", "55006", "42501", "42P01"})


def classify(exc: BaseException) -> Failure:
    """Is ``exc`` the database's fault (outage), the batch's (permanent), or unclear?"""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return Failure.OUTAGE
    orig = getattr(exc, "orig", None)
    sqlite_name = getattr(orig, "sqlite_errorname", None)
    if isinstance(sqlite_name, str):
        primary = sqlite_name.removeprefix("SQLITE_").split("_", 1)[0]
        return Failure.OUTAGE if primary in _SQLITE_OUTAGE else Failure.PERMANENT
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate:
        outage = sqlstate[:2] in _PG_OUTAGE_CLASSES or sqlstate in _PG_OUTAGE_CODES
        return Failure.OUTAGE if outage else Failure.PERMANENT
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeout | OSError):
        return Failure.UNSURE  # e.g. a connection refused, or a client-side limit: the probe decides
    return Failure.PERMANENT  # IntegrityError, DataError, ProgrammingError, StatementError, TypeError...


class JobQueue:
    """A bounded FIFO that also tracks the batch being written, so a stop can hand both over intact."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._jobs: deque[Job] = deque()
        self._in_flight: list[Job] = []
        self._cond = threading.Condition()

    def put(self, job: Job, *, force: bool = False) -> bool:
        with self._cond:
            if not force and len(self._jobs) >= self.maxsize:
                return False
            self._jobs.append(job)
            self._cond.notify_all()
            AUDIT_QUEUE_DEPTH.set(len(self._jobs) + len(self._in_flight))
            return True

    def take(self, limit: int, wait: float) -> list[Job]:
        """Up to ``limit`` jobs (now the batch in flight), waiting at most ``wait`` seconds for the first."""
        with self._cond:
            if not self._jobs:
                self._cond.wait(wait)
            batch = [self._jobs.popleft() for _ in range(min(limit, len(self._jobs)))]
            self._in_flight = batch
            return batch

    def done(self, batch: list[Job]) -> None:
        with self._cond:
            if self._in_flight is batch:
                self._in_flight = []
            AUDIT_QUEUE_DEPTH.set(len(self._jobs) + len(self._in_flight))
            self._cond.notify_all()

    def take_all(self) -> list[Job]:
        """Everything unwritten, the batch in flight first; the queue is empty afterwards."""
        with self._cond:
            jobs = self._in_flight + list(self._jobs)
            self._in_flight = []
            self._jobs.clear()
            AUDIT_QUEUE_DEPTH.set(0)
            self._cond.notify_all()
            return jobs

    def pending(self) -> int:
        with self._cond:
            return len(self._jobs) + len(self._in_flight)

    def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._jobs or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


_BATCH = 200
_UNSURE_ATTEMPTS = 5  # unclassified failures of one batch before the batch is suspected
_DROP_LOG_INTERVAL = 10.0  # seconds


class BackgroundWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        prepare: Callable[[], None] | None = None,
        probe: Callable[[Connection], None] | None = None,
        on_unwritten: Callable[[list[Job]], None] | None = None,
        max_queue: int = 10_000,
        initial_backoff: float = 0.05,
        max_backoff: float = 5.0,
    ) -> None:
        self._engine = engine
        self._prepare = prepare  # runs before each batch (e.g. migrations once the DB is back)
        self._probe = probe  # raises when the database cannot take writes (outage) rather than the rows
        self._on_unwritten = on_unwritten  # receives what a stop left unwritten (the spill file)
        self._queue = JobQueue(max_queue)
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._stop = threading.Event()  # no new jobs; the worker exits once the queue is empty
        self._abandon = threading.Event()  # close() timed out: stop retrying
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.set_aside = 0  # rows
        self.failing = False  # the last write attempt failed (callers then skip waiting on flush)
        self._last_drop_log = 0.0
        # gunicorn --preload forks after the app (and maybe a pooled connection) exists: the child must
        # neither share the parent's connections nor wait for the parent's thread.
        os.register_at_fork(after_in_child=functools.partial(_reset_in_child, weakref.ref(self)))

    # -- producer side -----------------------------------------------------------------------------
    def submit(self, job: Job, *, force: bool = False) -> bool:
        """Queue a job without blocking. False (logged, counted) when closed or the queue is full.

        ``force`` ignores the bound: for rows read back from a spill file, already bounded by its size.
        """
        if self._stop.is_set():
            self._count_drop("closed", "audit store closed; record dropped")
            return False
        if not self._queue.put(job, force=force):
            self._count_drop("queue_full", "audit queue full; record dropped")
            return False
        self._ensure_thread()
        return True

    def pending(self) -> int:
        return self._queue.pending()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is written (or set aside). True when the queue is empty."""
        return self._queue.wait_empty(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue for at most ``timeout`` seconds; hand what is left to ``on_unwritten``."""
        self._stop.set()
        if self._queue.pending():
            self._ensure_thread()
        if self.flush(timeout):
            self._join()
            return
        self._abandon.set()
        left = self._queue.take_all()
        self._queue.wake()
        self._join()
        self._hand_over(left)

    def _hand_over(self, jobs: list[Job]) -> None:
        data = [job for job in jobs if not isinstance(job, AfterWrite)]
        if data:
            AUDIT_WRITE_FAILURES.inc(len(data))
            log.error("audit store closing with %d records unwritten (database unavailable)", len(data))
        handled = False
        if self._on_unwritten is not None:
            try:
                self._on_unwritten(jobs)
                handled = True
            except Exception as exc:  # the spill itself failed (disk full...): count what is lost
                log.error("could not keep the unwritten audit records (%s)", type(exc).__name__)
        if not handled and data:
            AUDIT_RECORDS_DROPPED.labels(reason="closed").inc(len(data))
            self.dropped += len(data)

    def _join(self) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)

    # -- worker side -------------------------------------------------------------------------------
    def _after_fork(self) -> None:
        self._engine.dispose(close=False)
        self._thread = None
        self._lock = threading.Lock()
        self._queue = JobQueue(self._queue.maxsize)  # the parent's queued records stay there

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cds-audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._abandon.is_set():
            batch = self._queue.take(_BATCH, wait=0.2)
            if not batch:
                if self._stop.is_set():
                    return
                continue
            try:
                if not self._write_batch([job for job in batch if not isinstance(job, AfterWrite)]):
                    return  # abandoned: close() took the batch over
                for job in batch:
                    if isinstance(job, AfterWrite):
                        _run_quietly(job.action)
            finally:
                self._queue.done(batch)

    def _write_batch(self, batch: list[Job]) -> bool:
        """Write ``batch`` (or set its bad jobs aside). False only when close() gave up waiting."""
        if not batch:
            return True
        backoff = self._initial_backoff
        unsure = 0
        while not self._abandon.is_set():
            try:
                if self._prepare is not None:
                    self._prepare()
            except Exception as exc:
                self._note_failure(batch, exc, "audit database not ready")
            else:
                try:
                    self._write(batch)
                    self.failing = False
                    return True
                except Exception as exc:  # log the type only: the message may quote row values
                    kind = classify(exc)
                    self._note_failure(batch, exc, f"audit write failed ({kind.value})")
                    if kind is Failure.UNSURE:
                        unsure += 1
                    if kind is Failure.PERMANENT or unsure >= _UNSURE_ATTEMPTS:
                        unsure = 0
                        if self._database_answers():
                            return self._isolate(batch, exc)
            self._abandon.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)
        return False

    def _isolate(self, batch: list[Job], exc: BaseException) -> bool:
        """The database answers but will not take ``batch``: find the job to blame and set it aside."""
        if len(batch) > 1:
            middle = len(batch) // 2
            return self._write_batch(batch[:middle]) and self._write_batch(batch[middle:])
        [job] = batch
        self.set_aside += job.rows
        AUDIT_ROWS_SET_ASIDE.inc(job.rows)
        log.error(
            "audit job set aside: the database refuses it (%s, table %s, %d rows); later jobs go on",
            type(exc).__name__,
            job.table,
            job.rows,
        )
        return True

    def _database_answers(self) -> bool:
        """The health probe: can the database take writes at all (then the batch is to blame)?"""
        if self._probe is None:
            return True
        try:
            with self._engine.begin() as conn:
                self._probe(conn)
            return True
        except Exception as exc:
            log.warning("audit database probe failed (%s); waiting for it", type(exc).__name__)
            return False

    def _note_failure(self, batch: list[Job], exc: BaseException, what: str) -> None:
        self.failing = True
        AUDIT_WRITE_FAILURES.inc()
        log.warning("%s (%d records, %s)", what, len(batch), type(exc).__name__)

    def _write(self, batch: list[Job]) -> None:
        with self._engine.begin() as conn:
            # Consecutive inserts into one table become one statement (per chunk); other jobs run as is.
            for model, group in groupby(batch, key=lambda job: getattr(job, "model", None)):
                jobs = list(group)
                if model is None:
                    for job in jobs:
                        job(conn)
                else:
                    InsertRows.merged([job for job in jobs if isinstance(job, InsertRows)])(conn)

    def _count_drop(self, reason: str, message: str) -> None:
        self.dropped += 1
        AUDIT_WRITE_FAILURES.inc()
        AUDIT_RECORDS_DROPPED.labels(reason=reason).inc()
        # A full queue under load would log once per request: one line per interval is enough.
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL:
            self._last_drop_log = now
            log.error("%s (%d dropped so far by this process)", message, self.dropped)


def _run_quietly(action: Callable[[], None]) -> None:
    try:
        action()
    except Exception as exc:
        log.warning("audit writer follow-up failed (%s)", type(exc).__name__)


def _reset_in_child(ref: weakref.ref[BackgroundWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer._after_fork()
