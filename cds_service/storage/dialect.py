"""The few statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Insert
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(conn: Connection, model: type, rows: list[dict[str, Any]]) -> Insert:
    """INSERT that skips rows violating a unique constraint (idempotent retries and feedback)."""
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    return module.insert(model).values(rows).on_conflict_do_nothing()
