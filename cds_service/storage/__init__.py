"""Durable audit trail of issued cards and clinician feedback, with override analytics.

Interface used by the app factory and the protocol layer:
- ``install_storage(app, settings)``: puts an ``AuditStore`` on the app (``get_audit_store()`` reads it in a
  request), migrates the schema at start-up (unless ``CDS_DB_AUTO_UPGRADE=false``) and registers
  ``GET /admin/report`` when ``CDS_ADMIN_ENABLED`` is on.
- ``AuditStore.record_response(...)`` queues the cards of one response (never blocks, never raises);
  ``AuditStore.record_feedback(...)`` stores feedback idempotently and returns
  ``{"stored": n, "duplicates": n, "unknownCards": [...]}`` (plus ``"queued": n`` when the database was
  unavailable and the entries wait for a retry); entries for cards issued to another client are not
  stored and are listed as unknown; ``report``, ``purge`` and ``close`` as documented there.
- ``close`` writes what a stop during a database outage leaves unwritten to a spill file that the next
  ``start`` replays.

See docs/storage.md for what is stored, configuration and commands.
"""

from __future__ import annotations

import atexit
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from cds_service.config import Settings
    from cds_service.storage.store import AuditStore

__all__ = ["AuditStore", "build_store", "close_all", "get_audit_store", "install_storage"]

# Imports are deferred: ``cds-service`` loads the storage CLI before gunicorn starts, and the metrics
# module (imported by the store) must not be loaded in the gunicorn master before its multiprocess set-up.
_open_stores: weakref.WeakSet[AuditStore] = weakref.WeakSet()


def __getattr__(name: str) -> Any:
    if name == "AuditStore":
        from cds_service.storage.store import AuditStore

        return AuditStore
    raise AttributeError(name)


def build_store(settings: Settings) -> AuditStore:
    """An ``AuditStore`` for these settings, prepared if the database answers, closed at exit."""
    from cds_service.knowledge.loader import knowledge_version
    from cds_service.storage.config import StorageConfig
    from cds_service.storage.store import AuditStore

    config = StorageConfig.from_settings(settings)
    # The audit's rule version is the knowledge version /readyz and every hook response show.
    store = AuditStore(
        config, rule_version=knowledge_version(settings.cards_dir, settings.site_knowledge_dir)
    )
    store.start()
    _open_stores.add(store)
    return store


def install_storage(app: Flask, settings: Settings) -> None:
    store = build_store(settings)
    app.extensions["cds.audit"] = store
    if store.config.admin_enabled:
        from cds_service.storage.admin import admin_blueprint

        app.register_blueprint(admin_blueprint)


def get_audit_store() -> AuditStore:
    """The current app's audit store (in a request or an app context)."""
    from flask import current_app

    store: AuditStore = current_app.extensions["cds.audit"]
    return store


def close_all(timeout: float = 10.0) -> None:
    """Drain every store of this process. For gunicorn's ``worker_exit`` hook; also runs at exit."""
    for store in list(_open_stores):
        store.close(timeout)
        _open_stores.discard(store)


atexit.register(close_all)
