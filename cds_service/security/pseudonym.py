"""Pseudonymous patient references for logs and metrics.

Logs may correlate calls about the same patient, never name them: a keyed hash (HMAC-SHA256) of the
patient id with a secret salt. Set ``CDS_LOG_SALT`` so the reference stays stable across restarts and
workers; without it a random salt is drawn per process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_salt: bytes = secrets.token_bytes(32)


def set_salt(salt: str | None) -> None:
    global _salt
    _salt = salt.encode() if salt else secrets.token_bytes(32)


def patient_ref(patient_id: str | None) -> str | None:
    """A 16-hex-digit reference for ``patient_id`` (None stays None)."""
    if not patient_id:
        return None
    return hmac.new(_salt, patient_id.encode(), hashlib.sha256).hexdigest()[:16]
