"""Durable audit trail of issued cards and clinician feedback.

Interface used by the app factory and the protocol layer (implementation: the storage issue):
- ``install_storage(app, settings)``: puts an ``AuditStore`` on ``app.extensions["cds.audit"]``.
- ``AuditStore.record_response(service_id=, hook=, hook_instance=, patient_id=, cards=, client=)``:
  queue the cards of one response (never blocks the hook call, never raises).
- ``AuditStore.record_feedback(service_id=, items=, client=) -> dict``: store validated feedback items
  idempotently; returns a summary such as ``{"stored": 1, "duplicates": 0, "unknownCards": []}``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from cds_service.config import Settings


class NullAuditStore:
    """Keeps nothing. Placeholder until the storage issue lands."""

    def record_response(self, **_: Any) -> None:
        return None

    def record_feedback(self, *, items: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
        return {"stored": 0, "duplicates": 0, "unknownCards": []}

    def close(self, timeout: float = 5.0) -> None:
        return None


def install_storage(app: Flask, settings: Settings) -> None:
    app.extensions["cds.audit"] = NullAuditStore()
