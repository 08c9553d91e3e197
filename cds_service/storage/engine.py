"""SQLAlchemy engine for ``CDS_DATABASE_URL``."""

from __future__ import annotations

import contextlib
import os
import stat
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
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            private_sqlite_file(Path(url.database))
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


def private_sqlite_file(path: Path) -> None:
    """Create the database file 0600 in a 0700 directory (or tighten an existing file we own).

    The audit trail holds free-text comments and keyed patient hashes: only the service's user may read
    it. SQLite gives its -wal and -shm files the mode of the database file.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for member in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        tighten(member, 0o600)


def private_directory(path: Path) -> None:
    """Create ``path`` 0700, or tighten it when it exists, is ours and is not a shared (sticky) folder."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    tighten(path, 0o700)


def tighten(path: Path, mode: int) -> None:
    with contextlib.suppress(OSError):
        info = path.stat()
        if info.st_uid != os.geteuid() or info.st_mode & stat.S_ISVTX:
            return  # not ours to change (a mounted secret, /tmp)
        if stat.S_IMODE(info.st_mode) & ~mode:
            path.chmod(stat.S_IMODE(info.st_mode) & mode)
