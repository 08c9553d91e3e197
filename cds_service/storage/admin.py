"""``GET /admin/report``: the override report as JSON for a pharmacy dashboard.

Registered only when ``CDS_ADMIN_ENABLED`` is on. Authentication is not done here: the security layer's
request hook covers every ``/admin`` path.
"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from cds_service.protocol.errors import operation_outcome
from cds_service.storage.report import parse_since

admin_blueprint = Blueprint("cds_storage_admin", __name__)


@admin_blueprint.get("/admin/report")
def admin_report() -> ResponseReturnValue:
    raw = request.args.get("since")
    since = None
    if raw:
        try:
            since = parse_since(raw)
        except ValueError:
            body = operation_outcome("since must be an ISO date such as 2025-01-31", expression=["since"])
            return jsonify(body), 400
    store = current_app.extensions["cds.audit"]
    try:
        report = store.report(since=since)
    except Exception as exc:
        current_app.logger.error("report query failed (%s)", type(exc).__name__)
        return jsonify(operation_outcome("the audit database is unavailable", status=503)), 503
    response = jsonify(report)
    response.headers["Cache-Control"] = "no-store"
    return response
