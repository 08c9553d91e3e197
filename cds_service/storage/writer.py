"""Background writer: the hook response never waits for the database.

Jobs go on a bounded queue; one worker thread writes them in batches, retrying with backoff. Errors that
look transient (connection refused, database locked, server gone) are retried until the store closes;
other errors (a row the database rejects) are retried a few times and then dropped, so one bad row cannot
block the queue. Every failed attempt is logged (exception type only, never row contents) and counted in
``cds_audit_write_failures_total``. ``close(timeout)`` drains what is queued.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from cds_service.metrics import AUDIT_WRITE_FAILURES
from cds_service.storage.dialect import insert_ignore

log = logging.getLogger("cds_service.storage")

Job = Callable[[Connection], Any]


@dataclass(frozen=True)
class InsertRows:
    """A job that inserts rows into one table, skipping duplicates.

    The writer merges the InsertRows of one batch that target the same table into a single statement:
    one round trip instead of one per hook response. ``rows`` runs at write time (the patient hash may
    need a salt that only the database can supply).
    """

    model: type
    rows: Callable[[], list[dict[str, Any]]]

    def __call__(self, conn: Connection) -> None:
        conn.execute(insert_ignore(conn, self.model), self.rows())

    @staticmethod
    def merged(model: type, jobs: Iterable[InsertRows]) -> InsertRows:
        """One job inserting the rows of all ``jobs`` (all into ``model``)."""
        parts = list(jobs)
        return InsertRows(model, lambda: [row for job in parts for row in job.rows()])


_BATCH = 200
_PERMANENT_ATTEMPTS = 5
_DROP_LOG_INTERVAL = 10.0  # seconds


class BackgroundWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        prepare: Callable[[], None] | None = None,
        max_queue: int = 10_000,
        initial_backoff: float = 0.05,
        max_backoff: float = 5.0,
    ) -> None:
        self._engine = engine
        self._prepare = prepare  # runs before each batch (e.g. migrations and salt once the DB is back)
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=max_queue)
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._stop = threading.Event()  # no new jobs; the worker exits once the queue is empty
        self._abandon = threading.Event()  # close() timed out: stop retrying
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.failing = False  # the last write attempt failed (callers then skip waiting on flush)
        self._last_drop_log = 0.0
        # gunicorn --preload forks after the app (and maybe a pooled connection) exists: the child must
        # neither share the parent's connections nor wait for the parent's thread.
        os.register_at_fork(after_in_child=functools.partial(_reset_in_child, weakref.ref(self)))

    # -- producer side -----------------------------------------------------------------------------
    def submit(self, job: Job) -> bool:
        """Queue a job without blocking. False (logged, counted) when closed or the queue is full."""
        if self._stop.is_set():
            self._count_drop("audit store closed; record dropped")
            return False
        self._ensure_thread()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self._count_drop("audit queue full; record dropped")
            return False
        return True

    def pending(self) -> int:
        return self._queue.unfinished_tasks

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far is written (or given up). True when the queue is empty."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue for at most ``timeout`` seconds, then stop the worker."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.set()
            self._drain_inline(timeout)
            return
        self._stop.set()
        drained = self.flush(timeout)
        if not drained:
            left = self._queue.unfinished_tasks
            self._abandon.set()
            AUDIT_WRITE_FAILURES.inc(left)
            log.error("audit store closed with %d records unwritten", left)
        self._thread.join(timeout=1.0)

    # -- worker side -------------------------------------------------------------------------------
    def _after_fork(self) -> None:
        self._engine.dispose(close=False)
        self._thread = None
        self._lock = threading.Lock()
        self._queue = queue.Queue(maxsize=self._queue.maxsize)  # the parent's queued records stay there

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cds-audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write_with_retry(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _drain_inline(self, timeout: float) -> None:
        # Jobs queued but no worker (closed before the thread started): write them here.
        deadline = time.monotonic() + timeout
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                if time.monotonic() >= deadline or not self._write_with_retry([job], deadline=deadline):
                    self._count_drop("audit store closed with a record unwritten")
            finally:
                self._queue.task_done()

    def _write_with_retry(self, batch: list[Job], deadline: float | None = None) -> bool:
        """True when the batch is in the database."""
        backoff = self._initial_backoff
        attempts = 0
        while not self._abandon.is_set():
            attempts += 1
            try:
                self._write(batch)
                self.failing = False
                return True
            except Exception as exc:  # any failure: log type only, the message may quote row values
                self.failing = True
                AUDIT_WRITE_FAILURES.inc()
                transient = _is_transient(exc)
                name = type(exc).__name__
                log.warning("audit write failed (attempt %d, %d records, %s)", attempts, len(batch), name)
                if not transient and attempts >= _PERMANENT_ATTEMPTS:
                    if len(batch) > 1:
                        # Find the bad record: write the others one by one.
                        return all([self._write_with_retry([job], deadline) for job in batch])
                    self.dropped += 1
                    log.error("audit record dropped after %d attempts (%s)", attempts, type(exc).__name__)
                    return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._abandon.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)
        return False  # close() gave up waiting; it counts and logs what is left

    def _write(self, batch: list[Job]) -> None:
        if self._prepare is not None:
            self._prepare()
        with self._engine.begin() as conn:
            # Consecutive inserts into one table become one statement; other jobs run as they are.
            for model, group in groupby(
                batch, key=lambda job: job.model if isinstance(job, InsertRows) else None
            ):
                if model is None:
                    for job in group:
                        job(conn)
                else:
                    InsertRows.merged(model, [job for job in group if isinstance(job, InsertRows)])(conn)

    def _count_drop(self, message: str) -> None:
        self.dropped += 1
        AUDIT_WRITE_FAILURES.inc()
        # A full queue under load would log once per request: one line per interval is enough.
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL:
            self._last_drop_log = now
            log.error("%s (%d dropped so far by this process)", message, self.dropped)


def _reset_in_child(ref: weakref.ref[BackgroundWriter]) -> None:
    writer = ref()
    if writer is not None:
        writer._after_fork()


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated
