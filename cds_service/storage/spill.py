"""The spill file: audit records a stop could not write (the database was down), kept on local disk.

At a stop the writer hands over what is still queued; it is written here as JSON lines, one file per
stopping process, mode 0600 in a 0700 directory (``CDS_AUDIT_SPILL_DIR``). The next start of any worker
claims each file (an atomic rename, so two workers never replay one file), queues its records and deletes
the file once they are written. Records hold keyed patient hashes, never patient ids, but feedback
comments may hold PHI: the folder deserves the care the database gets. The folder's total size is bounded
by ``CDS_AUDIT_SPILL_MAX_BYTES``; what does not fit is dropped and counted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cds_service.storage.engine import private_directory

log = logging.getLogger("cds_service.storage")

PREFIX = "audit-spill-"
SUFFIX = ".jsonl"
_CLAIMED = ".replaying-"


def write_spill(directory: Path, records: list[dict[str, Any]], max_bytes: int) -> tuple[int, int]:
    """Write ``records`` (each with a ``rows`` list) to a new spill file.

    Returns (rows written, records that did not fit in ``max_bytes`` for the whole folder).
    """
    lines: list[bytes] = []
    budget = max_bytes - spill_size(directory)
    dropped = 0
    rows = 0
    for record in records:
        line = (json.dumps(record, separators=(",", ":"), default=_encode) + "\n").encode()
        if len(line) > budget:
            dropped += 1
            continue
        budget -= len(line)
        lines.append(line)
        rows += len(record["rows"])
    if not lines:
        return 0, dropped
    private_directory(directory)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    name = f"{PREFIX}{stamp}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
    temporary = directory / f".{name}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.writelines(lines)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(temporary, directory / name)  # a half-written file is never replayed
    _sync_directory(directory)
    return rows, dropped


def claim_spill_files(directory: Path) -> list[Path]:
    """Take every spill file waiting in ``directory`` (and any a dead process had claimed) for replay."""
    if not directory.is_dir():
        return []
    claimed = []
    for path in sorted(directory.iterdir()):
        base, _, owner = path.name.partition(_CLAIMED)
        if not (base.startswith(PREFIX) and base.endswith(SUFFIX)):
            continue
        if owner and owner.isdigit() and int(owner) != os.getpid() and _alive(int(owner)):
            continue  # another live worker is replaying it
        target = path.with_name(f"{base}{_CLAIMED}{os.getpid()}")
        try:
            os.rename(path, target)  # atomic: of several workers starting at once, one wins
        except FileNotFoundError:
            continue
        claimed.append(target)
    return claimed


def read_spill(path: Path) -> list[dict[str, Any]]:
    """The records of one spill file; a damaged line is skipped (and logged by count)."""
    records = []
    damaged = 0
    with open(path, "rb") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:
                damaged += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                damaged += 1
    if damaged:
        log.error("spill file %s: %d damaged lines skipped", path.name, damaged)
    return records


def spill_size(directory: Path) -> int:
    if not directory.is_dir():
        return 0
    return sum(p.stat().st_size for p in directory.iterdir() if p.name.startswith(PREFIX) and p.is_file())


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
