"""Keyed patient-id hashes, the key they need, and the rule version recorded with every card.

The key is a secret that never enters the database: whoever holds a copy of the database alone cannot
recover patient ids by hashing guesses. It comes from ``CDS_PATIENT_ID_KEY`` (or the deprecated
``CDS_PATIENT_ID_SALT``), else from the key file (``CDS_PATIENT_ID_KEY_FILE``, default
``<CDS_DATA_DIR>/patient-id.key``), which is generated (32 random bytes, hex, mode 0600) when the first
card is recorded without one (so ``cds-service report`` on an admin machine leaves no stray key).
A salt that an older version kept in ``store_meta`` is moved into the key file and deleted from the
database, so hashes written before the upgrade stay comparable with new ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from sqlalchemy import Connection, delete, select

from cds_service import __version__
from cds_service.storage.models import StoreMeta

log = logging.getLogger("cds_service.storage")

LEGACY_SALT_KEY = "patient_id_salt"  # the store_meta row of versions that kept the salt in the database
KEY_BYTES = 32


def patient_hash(key: str, patient_id: str | None) -> str | None:
    """HMAC-SHA256 of the id: stable for one key, useless without it (ids are guessable)."""
    if not patient_id:
        return None
    return hmac.new(key.encode(), patient_id.encode(), hashlib.sha256).hexdigest()


def new_key() -> str:
    """32 random bytes as 64 hex characters (the text is the HMAC key, as the old salt was)."""
    return secrets.token_hex(KEY_BYTES)


def read_key_file(path: Path) -> str | None:
    """The key in ``path``, or None when there is no such file. An empty file is an error."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    if not text:
        raise ValueError(f"the patient-id key file {path} is empty")
    return text


def write_key_file(path: Path, key: str, *, replace: bool = False) -> str:
    """Write ``key`` to ``path`` (0600, directory 0700 when created) and return the key now in the file.

    Without ``replace`` an existing file wins: several workers starting at once agree on one key. The
    file appears complete or not at all (written aside, then linked or renamed into place).
    """
    if not replace and (existing := read_key_file(path)) is not None:
        return existing  # also when the folder is read-only (a mounted secret)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
            return key
        try:
            os.link(temporary, path)
        except FileExistsError:
            existing = read_key_file(path)
            assert existing is not None
            return existing
        return key
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def existing_key(configured: str | None, key_file: Path) -> str | None:
    """The configured key, else the key file's, else None. Needs no database."""
    if configured:
        return configured
    existing = read_key_file(key_file)
    if existing is not None:
        _tighten(key_file)
    return existing


def local_key(configured: str | None, key_file: Path) -> str:
    """The configured key, else the key file's, generated when missing. Needs no database."""
    existing = existing_key(configured, key_file)
    if existing is not None:
        return existing
    key = write_key_file(key_file, new_key())
    log.warning(
        "generated a new patient-id key in %s (keep it secret, back it up apart from the data)", key_file
    )
    return key


def move_legacy_salt(conn: Connection, configured: str | None, key_file: Path) -> str | None:
    """The key to use, after moving a salt stored in the database (older versions) to the key file.

    ``configured`` is a key already in use (configuration, or a key file read while the database was
    down): it wins over the salt.

    The salt row is deleted in every case: a database copy must never carry what reverses its hashes.
    """
    salt = conn.execute(select(StoreMeta.value).where(StoreMeta.key == LEGACY_SALT_KEY)).scalar_one_or_none()
    if salt is None:
        return existing_key(configured, key_file)  # None: generated at first use
    if configured:
        key = configured
        if configured != salt:
            log.warning("a patient-id salt in the database differs from the key in use; deleted")
    else:
        try:
            key = write_key_file(key_file, salt)
        except OSError as exc:
            # Keep working as before rather than lose the salt: it stays until a key file can be written.
            log.error(
                "could not move the patient-id salt out of the database to %s (%s); it stays there until "
                "CDS_PATIENT_ID_KEY_FILE names a writable file or a mounted key",
                key_file,
                type(exc).__name__,
            )
            return salt
        if key == salt:
            log.warning("moved the patient-id salt from the database to the key file %s", key_file)
        else:
            log.warning("a patient-id key file already exists; the salt in the database was deleted")
    conn.execute(delete(StoreMeta).where(StoreMeta.key == LEGACY_SALT_KEY))
    return key


def rotate_key_file(key_file: Path) -> str:
    """Replace the key in ``key_file`` with a new one. Old hashes can no longer be linked to new ones."""
    key = new_key()
    write_key_file(key_file, key, replace=True)
    return key


def _tighten(path: Path) -> None:
    # A key file copied in by hand may be world-readable; it must not stay so.
    with contextlib.suppress(OSError):
        if path.stat().st_mode & 0o077 and path.stat().st_uid == os.geteuid():
            path.chmod(0o600)


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
