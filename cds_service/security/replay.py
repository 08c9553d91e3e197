"""Remember seen JWT ids (``jti``) until their token expires, so a captured token cannot be replayed.

In-process by default. Several instances behind a load balancer each see only part of the traffic, so
they share a small ``jwt_replay`` table in the configured database instead (created here with
``create_all`` on this module's own MetaData; the audit store's migrations do not know about it).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Column, Float, MetaData, String, Table, create_engine, delete, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from cds_service.config import ConfigError

log = logging.getLogger("cds_service.security.replay")


class ReplayCache(Protocol):
    def check_and_store(self, iss: str, jti: str, expires_at: float) -> bool:
        """True when (iss, jti) is new (and now remembered until ``expires_at``); False on replay."""
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


_metadata = MetaData()
jwt_replay = Table(
    "jwt_replay",
    _metadata,
    Column("key", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False, index=True),
)


class DatabaseReplayCache:
    """The primary key makes "insert if new" atomic across instances; a duplicate insert is a replay."""

    def __init__(
        self, engine: Engine, *, clock: Callable[[], float] = time.time, purge_every: int = 500
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._purge_every = purge_every
        self._since_purge = 0
        self._lock = threading.Lock()
        _metadata.create_all(engine)

    @classmethod
    def from_url(cls, url: str, **kwargs: float) -> DatabaseReplayCache:
        return cls(create_engine(url, pool_pre_ping=True), **kwargs)  # type: ignore[arg-type]

    def check_and_store(self, iss: str, jti: str, expires_at: float) -> bool:
        key = _key(iss, jti)
        now = self._clock()
        self._maybe_purge(now)
        try:
            with self._engine.begin() as conn:
                # An expired row for the same key may linger until the next purge: drop it first.
                conn.execute(
                    delete(jwt_replay).where(jwt_replay.c.key == key, jwt_replay.c.expires_at <= now)
                )
                conn.execute(insert(jwt_replay).values(key=key, expires_at=expires_at))
        except IntegrityError:
            return False
        return True

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


def make_replay_cache(mode: str, database_url: str | None) -> ReplayCache:
    """``auto`` uses the database when it is a shared server (PostgreSQL), else memory."""
    shared = bool(database_url) and database_url.split(":", 1)[0].split("+", 1)[0] == "postgresql"
    if mode == "database" or (mode == "auto" and shared):
        if not database_url:
            raise ConfigError("CDS_JWT_REPLAY_CACHE=database needs CDS_DATABASE_URL")
        return DatabaseReplayCache.from_url(database_url)
    return MemoryReplayCache()
