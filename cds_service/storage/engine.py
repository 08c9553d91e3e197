"""SQLAlchemy engine for ``CDS_DATABASE_URL``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from cds_service.config import ConfigError


def make_engine(database_url: str) -> Engine:
    try:
        url = make_url(database_url)
    except Exception as exc:  # the URL may hold a password: do not echo it
        raise ConfigError("CDS_DATABASE_URL is not a valid database URL") from exc
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 5})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A short connect timeout: an unreachable server must not hold the writer (or feedback) for minutes.
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 3})


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets report queries read while a worker writes; NORMAL sync is durable across process stops.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
