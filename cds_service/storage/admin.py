"""``GET /admin/report``: the override report as JSON for a pharmacy dashboard.

Registered only when ``CDS_ADMIN_ENABLED`` is on. Authentication is not done here: the security layer's
request hook covers every ``/admin`` path. What the caller may see is decided here:

- auth on: the authenticated client's own data (its issuer and tenant): the cards issued to it and the
  feedback it sent. Override reasons are free text one organisation's clinicians wrote; another client
  must not read them.
- ``?client=all``: every client's data, only for a client marked ``report_all_clients: true`` in the
  trusted-clients file (403 otherwise). The operator's own view is ``cds-service report``.
- auth off (a developer's machine): every client's data, and the answer says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from cds_service.hooks.errors import CdsError, operation_outcome
from cds_service.storage.report import ReasonDisplays, ReportScope, parse_since

if TYPE_CHECKING:
    from cds_service.security import SecurityState

admin_blueprint = Blueprint("cds_storage_admin", __name__)

ALL_CLIENTS = "all"
AUTH_OFF_SCOPE_NOTE = "CDS_AUTH=off: every client's data; with authentication on, a client sees only its own"


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
    scope, auth_off = _scope(request.args.get("client"))
    store = current_app.extensions["cds.audit"]
    try:
        displays = ReasonDisplays.of(current_app.extensions["cds.runtime"].knowledge)
        report = store.report(since=since, scope=scope, reason_displays=displays)
    except Exception as exc:
        current_app.logger.error("report query failed (%s)", type(exc).__name__)
        return jsonify(operation_outcome("the audit database is unavailable", status=503)), 503
    if auth_off:
        report["scope"]["note"] = AUTH_OFF_SCOPE_NOTE
    response = jsonify(report)
    response.headers["Cache-Control"] = "no-store"
    return response


def _scope(requested: str | None) -> tuple[ReportScope | None, bool]:
    """The data the caller may see (None: every client's) and whether authentication is off."""
    if requested not in (None, ALL_CLIENTS):
        raise CdsError(400, f"client must be {ALL_CLIENTS!r} or left out", expression=["client"])
    security: SecurityState | None = current_app.extensions.get("cds.security")
    client = g.get("cds_client")
    if security is not None and security.verifier is None:
        return None, True
    if security is None or client is None:  # fail closed: no one to scope the report to
        raise CdsError(403, "the report is scoped to the authenticated client, and there is none")
    if requested != ALL_CLIENTS:
        return ReportScope(iss=client.iss, tenant=client.tenant), False
    trusted = next((entry for entry in security.clients if entry.iss == client.iss), None)
    if trusted is None or not trusted.report_all_clients:
        raise CdsError(
            403,
            "client=all needs a trusted client marked report_all_clients: true; without it a client "
            "sees its own data only",
            expression=["client"],
        )
    return None, False
