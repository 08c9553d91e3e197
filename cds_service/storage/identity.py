"""Salted patient-id hashes and the rule version recorded with every card."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

from sqlalchemy import Connection, select

from cds_service import __version__
from cds_service.storage.dialect import insert_ignore
from cds_service.storage.models import StoreMeta

_SALT_KEY = "patient_id_salt"


def patient_hash(salt: str, patient_id: str | None) -> str | None:
    """HMAC-SHA256 of the id: stable for one salt, useless without it (ids are guessable)."""
    if not patient_id:
        return None
    return hmac.new(salt.encode(), patient_id.encode(), hashlib.sha256).hexdigest()


def load_or_create_salt(conn: Connection) -> str:
    """The salt stored in the database, created once; concurrent first starts agree on one value."""
    conn.execute(insert_ignore(conn, StoreMeta), [{"key": _SALT_KEY, "value": secrets.token_hex(32)}])
    return conn.execute(select(StoreMeta.value).where(StoreMeta.key == _SALT_KEY)).scalar_one()


def rule_version(cards_dir: Path) -> str:
    """Package version plus a short hash of every file under ``cards_dir`` (names and contents)."""
    digest = hashlib.sha256()
    if cards_dir.is_dir():
        for path in sorted(p for p in cards_dir.rglob("*") if p.is_file()):
            digest.update(path.relative_to(cards_dir).as_posix().encode())
            digest.update(b"\0")
            digest.update(path.read_bytes())
            digest.update(b"\0")
    return f"{__version__}+{digest.hexdigest()[:12]}"
