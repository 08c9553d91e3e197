"""The few statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Connection, Insert
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignore(conn: Connection, model: type) -> Insert:
    """INSERT that skips rows violating a unique constraint (idempotent retries and feedback).

    Execute it with a list of row dicts: without inline values the statement is compiled once and
    cached, and SQLAlchemy sends the rows as one multi-row INSERT.
    """
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    return module.insert(model).on_conflict_do_nothing()
