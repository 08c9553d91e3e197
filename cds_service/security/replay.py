"""Remember seen JWT ids (``jti``) until their token expires, so a captured token cannot be replayed.

By default in the configured database, whatever its kind: gunicorn workers on one host share the SQLite
file, replicas share PostgreSQL. The ``jwt_replay`` table is created by migration 0002. An INSERT on its
primary key is atomic across processes, so a duplicate is a replay.

The database is never a condition of authentication: when it cannot be reached (or is slow past a short
timeout) the check is made in a process-local memory cache instead, counted in
``cds_jwt_replay_fallback_total``, logged at most once a minute and shown on ``/readyz``. During such a
period a token replayed to the same process is still refused; one replayed to another worker is not.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import create_engine, delete, event, insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cds_service.config import ConfigError
from cds_service.storage.models import JwtReplay

log = logging.getLogger("cds_service.security.replay")


class ReplayCache(Protocol):
    def check_and_store(self, iss: str, jti: str, expires_at: float) -> bool:
        """True when (iss, jti) is new (and now remembered until ``expires_at``); False on replay.

        Never raises because a store is unreachable: it answers from a local cache instead."""
        ...

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: ``{"mode": ..., "degraded": bool}`` (and ``since`` when degraded)."""
        ...


def _key(iss: str, jti: str) -> str:
    # Hashing bounds the stored length whatever the client puts in jti.
    return hashlib.sha256(f"{iss}\n{jti}".encode()).hexdigest()


class MemoryReplayCache:
    def __init__(self, *, clock: Callable[[], float] = time.time, purge_every: int = 1000) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._purge_every = purge_every
        self._since_purge = 0

    def check_and_store(self, iss: str, jti: str, expires_at: float) -> bool:
        key = _key(iss, jti)
        now = self._clock()
        with self._lock:
            self._since_purge += 1
            if self._since_purge >= self._purge_every:
                self._purge(now)
            known = self._seen.get(key)
            if known is not None and known > now:
                return False
            self._seen[key] = expires_at
            return True

    def _purge(self, now: float) -> None:
        self._since_purge = 0
        for key in [key for key, expires in self._seen.items() if expires <= now]:
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)

    def status(self) -> dict[str, Any]:
        return {"mode": "memory", "degraded": False}


# The table is one of the audit store's models, created by migration 0002. Its key is a hash of
# (iss, jti): a fixed-length primary key whatever the client puts in jti.
jwt_replay = JwtReplay.__table__

# Built once: on the hot path SQLAlchemy then reuses the compiled statement.
_INSERT = insert(jwt_replay)

# A replay check waits at most about this long for the database before using the local cache.
DB_TIMEOUT_SECONDS = 1.0
# After a failure the database is tried again only after this pause, so an outage costs one slow check
# per process per pause, not one per call.
RETRY_AFTER_SECONDS = 5.0
LOG_EVERY_SECONDS = 60.0


class DatabaseReplayCache:
    """The shared cache, degrading to a process-local ``MemoryReplayCache`` while the database is down."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        purge_every: int = 500,
        retry_after: float = RETRY_AFTER_SECONDS,
        log_every: float = LOG_EVERY_SECONDS,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._monotonic = monotonic
        self._purge_every = purge_every
        self._since_purge = 0
        self._lock = threading.Lock()
        self._fallback = MemoryReplayCache(clock=clock)
        self._retry_after = retry_after
        self._log_every = log_every
        self._degraded_since: float | None = None  # wall-clock time of the first failure
        self._retry_at = 0.0  # monotonic
        self._last_log: float | None = None  # monotonic
        self._fallbacks_unlogged = 0

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> DatabaseReplayCache:
        return cls(replay_engine(url), **kwargs)

    def check_and_store(self, iss: str, jti: str, expires_at: float) -> bool:
        if self._degraded_since is not None and not self._claim_probe():
            return self._fall_back(iss, jti, expires_at, None)
        key = _key(iss, jti)
        now = self._clock()
        try:
            self._maybe_purge(now)
            fresh = self._insert(key, expires_at, now)
        except SQLAlchemyError as exc:
            return self._fall_back(iss, jti, expires_at, exc)
        self._recovered()
        return fresh

    def _insert(self, key: str, expires_at: float, now: float) -> bool:
        """One INSERT (one short transaction) on the usual path; its primary key decides a replay."""
        try:
            with self._engine.begin() as conn:
                conn.execute(_INSERT, {"key": key, "expires_at": expires_at})
            return True
        except IntegrityError:
            pass
        # Seen before, or an expired row lingering until the next purge: that one may be replaced.
        try:
            with self._engine.begin() as conn:
                expired = delete(jwt_replay).where(jwt_replay.c.key == key, jwt_replay.c.expires_at <= now)
                if not conn.execute(expired).rowcount:
                    return False
                conn.execute(_INSERT, {"key": key, "expires_at": expires_at})
            return True
        except IntegrityError:  # another process replaced it first
            return False

    def _claim_probe(self) -> bool:
        """While degraded, one check per pause tries the database again; the others answer locally."""
        now = self._monotonic()
        with self._lock:
            if now < self._retry_at:
                return False
            self._retry_at = now + self._retry_after
            return True

    def status(self) -> dict[str, Any]:
        since = self._degraded_since
        if since is None:
            return {"mode": "database", "degraded": False}
        stamp = datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return {"mode": "database", "degraded": True, "since": stamp}

    def _fall_back(self, iss: str, jti: str, expires_at: float, error: Exception | None) -> bool:
        from cds_service import metrics  # late: the gunicorn master must not load metrics

        metrics.JWT_REPLAY_FALLBACK.inc()
        now_mono = self._monotonic()
        with self._lock:
            if error is not None:
                if self._degraded_since is None:
                    self._degraded_since = self._clock()
                self._retry_at = now_mono + self._retry_after
            self._fallbacks_unlogged += 1
            due = self._last_log is None or now_mono - self._last_log >= self._log_every
            if due:
                count, self._fallbacks_unlogged, self._last_log = self._fallbacks_unlogged, 0, now_mono
        if due:
            # The exception type only: its message may hold the URL; never the token or its jti.
            log.warning(
                "JWT replay store unavailable (%s): %d check(s) made in this process's memory instead",
                type(error).__name__ if error is not None else "retry pending",
                count,
            )
        return self._fallback.check_and_store(iss, jti, expires_at)

    def _recovered(self) -> None:
        if self._degraded_since is None:
            return
        with self._lock:
            self._degraded_since = None
            self._last_log = None
            self._fallbacks_unlogged = 0
        log.warning("JWT replay store reachable again: replay checks shared across processes")

    def _maybe_purge(self, now: float) -> None:
        with self._lock:
            self._since_purge += 1
            if self._since_purge < self._purge_every:
                return
            self._since_purge = 0
        try:
            with self._engine.begin() as conn:
                conn.execute(delete(jwt_replay).where(jwt_replay.c.expires_at <= now))
        except SQLAlchemyError as exc:
            log.warning("jwt_replay purge failed: %s", type(exc).__name__)


def replay_engine(database_url: str, timeout: float = DB_TIMEOUT_SECONDS) -> Engine:
    """An engine of its own, with short waits: a replay check must never hold a hook call for long."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            # Open the audit store's file read-write, never create it: a missing file is "unreachable".
            url = url.set(database=f"file:{url.database}", query={**url.query, "mode": "rw", "uri": "true"})
        # ``timeout`` is SQLite's busy timeout: how long to wait for another process's write lock.
        engine = create_engine(url, connect_args={"timeout": timeout}, pool_timeout=timeout)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    millis = int(timeout * 1000)
    return create_engine(
        url,
        pool_timeout=timeout,
        connect_args={
            "connect_timeout": max(1, round(timeout)),  # libpq counts whole seconds
            "options": f"-c statement_timeout={millis} -c lock_timeout={millis}",
        },
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL (the audit store sets it too; it persists in the file) lets this insert run beside readers. If
    # another process holds the file while switching, it is WAL already or about to be.
    with contextlib.suppress(sqlite3.OperationalError):
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_replay_cache(mode: str, database_url: str | None) -> ReplayCache:
    """``auto`` and ``database``: the configured database, SQLite or PostgreSQL; ``memory``: per process."""
    if mode == "memory":
        return MemoryReplayCache()
    if not database_url:
        raise ConfigError("CDS_JWT_REPLAY_CACHE=database needs CDS_DATABASE_URL")
    return DatabaseReplayCache.from_url(database_url)
