"""HTTP endpoints: discovery, service calls, feedback, health.

Thin on purpose: parse and validate, hand over to the pipeline, write the response. Clinical questions
are decided in ``cds_service.rules``; the prefetch plan in ``cds_service.hooks.prefetch``,
carried out by ``cds_service.patient_data``.
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from cds_service import metrics, pipeline
from cds_service.cards import card_topics
from cds_service.hooks.errors import CdsError
from cds_service.hooks.prefetch import ResolvedData
from cds_service.hooks.services import SERVICES, ServiceDefinition
from cds_service.hooks.validation import HookCall, validate_call, validate_feedback
from cds_service.patient_data import resolve
from cds_service.protocol.json_body import read_hook_request, read_json
from cds_service.runtime import get_runtime
from cds_service.security import authorize_fhir_server, replay_cache_status
from cds_service.storage import get_audit_store

log = logging.getLogger(__name__)
blueprint = Blueprint("cds_hooks", __name__)


def _service(service_id: str) -> ServiceDefinition:
    service = SERVICES.get(service_id)
    if service is None:
        raise CdsError(404, f"no CDS service with id {service_id!r}; see GET /cds-services")
    return service


@blueprint.get("/cds-services")
def discovery() -> Response:
    return jsonify(get_runtime().discovery)


@blueprint.post("/cds-services/<service_id>")
def call_service(service_id: str) -> Response:
    service = _service(service_id)
    settings = get_runtime().settings
    body = read_hook_request(settings.max_json_depth)
    call = validate_call(body, service, max_draft_orders=settings.max_draft_orders)
    g.cds_log = {"service": service.id, "hook": service.hook.hook, "hookInstance": call.hook_instance}
    if call.fhir_server is not None:
        # Judged on every call, whatever the drug and the prefetch: a client misconfigured with a server
        # it may not name hears so at its first call, not at the rare order that needs a fetch.
        authorize_fhir_server(call.fhir_server)
    rt = get_runtime()

    def fetch(hook_call: HookCall) -> ResolvedData:
        return resolve(hook_call, rt.templates, rt.fhir_client, authorize_fhir_server)

    outcome = pipeline.run(
        call, rt.knowledge, fetch, options=rt.options, refuse_without_data=settings.no_data_status == 412
    )
    audit = get_audit_store()
    cards, suppressed = _not_repeated_at_signing(service, call, outcome, audit)
    by_indicator = Counter(card["indicator"] for card in cards)
    g.cds_log["cards"] = dict(by_indicator)
    if suppressed:
        g.cds_log["suppressed"] = len(suppressed)
    for card in cards:
        for topic in card_topics(card):  # each problem a card covers (one dose card per order)
            metrics.CARDS.labels(topic=topic, indicator=card["indicator"]).inc()
    if outcome.cards:
        audit.record_response(
            service_id=service.id,
            hook=service.hook.hook,
            hook_instance=call.hook_instance,
            patient_id=call.patient_id,
            cards=cards,
            client=g.get("cds_client"),
            keys=outcome.keys,
            suppressed=suppressed,
        )
    return jsonify({"cards": cards})


def _not_repeated_at_signing(
    service: ServiceDefinition, call: HookCall, outcome: pipeline.Outcome, audit: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cards to show, cards suppressed): at order-sign, a card whose finding the clinician accepted or
    overrode at order-select is not shown again (storage/suppression.py; CDS_SIGN_SUPPRESSION)."""
    if service.hook.hook != "order-sign" or not outcome.cards:
        return outcome.cards, []
    answered = audit.answered_at_select(call.patient_id, outcome.keys)
    if not answered:
        return outcome.cards, []
    return (
        [card for card in outcome.cards if card["uuid"] not in answered],
        [card for card in outcome.cards if card["uuid"] in answered],
    )


@blueprint.after_request
def knowledge_version_header(response: Response) -> Response:
    """Every answer to a hook call names the knowledge it was evaluated with (as /readyz and the audit)."""
    if request.endpoint == "cds_hooks.call_service":
        response.headers["X-Knowledge-Version"] = get_runtime().knowledge.version
    return response


@blueprint.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    service = _service(service_id)
    settings = get_runtime().settings
    items = validate_feedback(
        read_json(settings.max_json_depth),
        max_entries=settings.feedback_max_entries,
        max_comment_chars=settings.feedback_max_comment_chars,
    )
    g.cds_log = {"service": service.id, "feedback": len(items)}
    summary: dict[str, Any] = current_app.extensions["cds.audit"].record_feedback(
        service_id=service.id, items=items, client=g.get("cds_client")
    )
    return jsonify(summary)


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz() -> Response:
    rt = get_runtime()
    body: dict[str, Any] = {
        "status": "ready",
        "knowledgeVersion": rt.knowledge.version,
        "topics": len(rt.knowledge.topics),
        "valueSets": len(rt.knowledge.valuesets),
    }
    if rt.knowledge.site is not None:  # CDS_SITE_KNOWLEDGE: value sets extended, topics off or re-indicated
        body["site"] = rt.knowledge.site
    warning = current_app.extensions.get("cds.auth_warning")
    if warning:
        body["warnings"] = [warning]
    replay = replay_cache_status()  # degraded: replay checks per process while the database is down
    if replay is not None:
        body["replayCache"] = replay
    return jsonify(body)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CdsError)
    def cds_error(error: CdsError) -> tuple[Response, int, dict[str, str]]:
        if error.status >= 500:
            log.error("request failed: %s", error.diagnostics)
        return jsonify(error.body()), error.status, error.headers

    @app.errorhandler(404)
    def not_found(_: Exception) -> tuple[Response, int]:
        return jsonify(CdsError(404, "no such endpoint; see GET /cds-services").body()), 404

    @app.errorhandler(405)
    def wrong_method(error: Any) -> tuple[Response, int, dict[str, str]]:
        allowed = ", ".join(sorted(getattr(error, "valid_methods", None) or []))
        body = CdsError(405, f"method {request.method} not allowed here; allowed: {allowed}").body()
        return jsonify(body), 405, {"Allow": allowed} if allowed else {}

    @app.errorhandler(413)
    def too_large(_: Exception) -> tuple[Response, int]:
        limit = get_runtime().settings.max_body_bytes
        return jsonify(CdsError(413, f"request body larger than {limit} bytes").body()), 413

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response, int]:
        # Never a stack trace to the client; the log has the exception type only (no patient data).
        status = getattr(error, "code", 500)
        if isinstance(status, int) and 400 <= status < 500:
            return jsonify(CdsError(status, getattr(error, "description", "bad request")).body()), status
        # The type and the place are enough to find the bug; the message could quote patient data.
        frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
        where = f"{frame.filename}:{frame.lineno}" if frame else "unknown"
        log.error("unexpected error %s at %s", type(error).__name__, where)
        return jsonify(CdsError(500, "internal error; the request was not evaluated").body()), 500
