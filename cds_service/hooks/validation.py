"""Validate a CDS Hooks 2.0.1 service call and pick out what the service needs from it.

Every problem becomes a 400 whose OperationOutcome names the offending field (``context.patientId``),
so an integration engineer can fix the EHR's request without reading our code. More draft orders (or
selections) than ``CDS_MAX_DRAFT_ORDERS`` is a 413 naming the limit: each order costs work on the hook
path, and a call is answered within the EHR's timeout or not at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cds_service.config import Settings
from cds_service.data_keys import PREFETCH_KEYS
from cds_service.hooks.errors import CdsError, InvalidRequest
from cds_service.hooks.raw_json import is_json_object
from cds_service.hooks.services import ServiceDefinition

# A FHIR id, [A-Za-z0-9\-.]{1,64}, but never "." or "..": in a URL path those name the directory itself or
# its parent, so Patient/.. would read the FHIR base.
_ID = r"(?!\.\.?\Z)[A-Za-z0-9\-.]{1,64}"
FHIR_ID = re.compile(_ID)
USER_REFERENCE = re.compile(rf"(Practitioner|PractitionerRole|Patient|RelatedPerson)/{_ID}")
LOCAL_REFERENCE = re.compile(rf"[A-Z][A-Za-z]+/{_ID}")
ORDER_RESOURCE_TYPES = frozenset(
    {
        "MedicationRequest",
        "MedicationOrder",
        "ServiceRequest",
        "ProcedureRequest",
        "NutritionOrder",
        "DeviceRequest",
        "VisionPrescription",
        "CommunicationRequest",
    }
)


@dataclass(frozen=True)
class HookCall:
    """A validated service call. ``access_token`` is excluded from repr so it never reaches a log."""

    service: ServiceDefinition
    hook_instance: str
    patient_id: str
    user_id: str
    context: Mapping[str, Any]
    draft_orders: tuple[Mapping[str, Any], ...]
    selections: frozenset[str] | None
    prefetch: Mapping[str, Any]
    fhir_server: str | None
    access_token: str | None = field(default=None, repr=False)


def _require(container: Mapping[str, Any], key: str, kind: type, path: str) -> Any:
    if key not in container or container[key] is None:
        raise InvalidRequest(f"{path} is required", path)
    value = container[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidRequest(f"{path} must be a {_type_name(kind)}", path)
    if kind is str and not value.strip():
        raise InvalidRequest(f"{path} must not be empty", path)
    return value


def _type_name(kind: type) -> str:
    return {str: "string", dict: "JSON object", list: "JSON array", int: "integer"}.get(kind, kind.__name__)


DEFAULT_MAX_DRAFT_ORDERS = Settings.max_draft_orders  # for callers without settings (offline evaluate)


def _check_count(items: list[Any], limit: int, path: str, what: str) -> None:
    if len(items) > limit:
        raise CdsError(
            413,
            f"{path} holds {len(items)} {what}; at most {limit} are accepted per call (CDS_MAX_DRAFT_ORDERS)",
            expression=[path],
        )


def _orders_bundle(
    context: Mapping[str, Any], field_name: str, max_orders: int
) -> tuple[Mapping[str, Any], ...]:
    path = f"context.{field_name}"
    bundle = _require(context, field_name, dict, path)
    if bundle.get("resourceType") != "Bundle":
        raise InvalidRequest(f"{path} must be a FHIR Bundle", f"{path}.resourceType")
    # A Bundle without "type" is accepted: the CDS Hooks sandbox sends that.
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise InvalidRequest(f"{path}.entry must be a JSON array", f"{path}.entry")
    _check_count(entries, max_orders, f"{path}.entry", "entries")
    orders = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        where = f"{path}.entry[{index}].resource"
        if not isinstance(resource, dict):
            raise InvalidRequest(f"{where} must be a FHIR resource", where)
        kind = resource.get("resourceType")
        if not isinstance(kind, str) or not kind:
            raise InvalidRequest(f"{where}.resourceType is required", f"{where}.resourceType")
        if kind == "Medication":
            # Some EHRs put the referenced Medication beside the order; it is not an order itself.
            orders.append(resource)
            continue
        if kind not in ORDER_RESOURCE_TYPES:
            raise InvalidRequest(f"{where} is a {kind}, not an order resource", f"{where}.resourceType")
        if "id" in resource and not (isinstance(resource["id"], str) and FHIR_ID.fullmatch(resource["id"])):
            raise InvalidRequest(f"{where}.id is not a valid FHIR id", f"{where}.id")
        orders.append(resource)
    return tuple(orders)


def _selections(
    context: Mapping[str, Any], orders: tuple[Mapping[str, Any], ...], max_orders: int
) -> frozenset[str]:
    selections = _require(context, "selections", list, "context.selections")
    if not selections:
        raise InvalidRequest("context.selections must name at least one order", "context.selections")
    # Selections name draft orders, so there are never more of them (repeats add nothing but work).
    _check_count(selections, max_orders, "context.selections", "references")
    present = {f"{o.get('resourceType')}/{o.get('id')}" for o in orders if o.get("id")}
    for index, selection in enumerate(selections):
        where = f"context.selections[{index}]"
        if not isinstance(selection, str) or not LOCAL_REFERENCE.fullmatch(selection):
            raise InvalidRequest(f"{where} must be a reference like MedicationRequest/123", where)
        if selection not in present:
            raise InvalidRequest(f"{where} ({selection}) is not an entry of context.draftOrders", where)
    return frozenset(selections)


def _fhir_server(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    server = body.get("fhirServer")
    authorization = body.get("fhirAuthorization")
    if server is not None:
        if not isinstance(server, str) or not server.strip():
            raise InvalidRequest("fhirServer must be a URL", "fhirServer")
        parts = urlsplit(server)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise InvalidRequest("fhirServer must be an absolute http(s) URL", "fhirServer")
        if "?" in server or "#" in server:
            # Even an empty query or fragment: queries resolved against it would go one directory up.
            raise InvalidRequest("fhirServer must be a base URL without query or fragment", "fhirServer")
    if authorization is None:
        return server, None
    if not isinstance(authorization, dict):
        raise InvalidRequest("fhirAuthorization must be a JSON object", "fhirAuthorization")
    if server is None:
        raise InvalidRequest("fhirAuthorization requires fhirServer", "fhirServer")
    token = _require(authorization, "access_token", str, "fhirAuthorization.access_token")
    token_type = _require(authorization, "token_type", str, "fhirAuthorization.token_type")
    if token_type.lower() != "bearer":
        raise InvalidRequest("fhirAuthorization.token_type must be Bearer", "fhirAuthorization.token_type")
    return server, token


def _prefetch(body: Mapping[str, Any]) -> Mapping[str, Any]:
    prefetch = body.get("prefetch")
    if prefetch is None:
        return {}
    if not isinstance(prefetch, dict):
        raise InvalidRequest("prefetch must be a JSON object", "prefetch")
    for key in PREFETCH_KEYS:
        value = prefetch.get(key)
        if key in prefetch and value is not None and not is_json_object(value):
            raise InvalidRequest(f"prefetch.{key} must be a FHIR resource or null", f"prefetch.{key}")
    return prefetch


def validate_call(
    body: Any, service: ServiceDefinition, *, max_draft_orders: int = DEFAULT_MAX_DRAFT_ORDERS
) -> HookCall:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    hook = _require(body, "hook", str, "hook")
    hook_instance = _require(body, "hookInstance", str, "hookInstance")
    context = _require(body, "context", dict, "context")
    if hook != service.hook.hook:
        raise InvalidRequest(f"service {service.id} answers the {service.hook.hook} hook, not {hook}", "hook")
    user_id = _require(context, "userId", str, "context.userId")
    if not USER_REFERENCE.fullmatch(user_id):
        raise InvalidRequest("context.userId must be a reference like Practitioner/123", "context.userId")
    patient_id = _require(context, "patientId", str, "context.patientId")
    if not FHIR_ID.fullmatch(patient_id):
        raise InvalidRequest("context.patientId must be a FHIR id", "context.patientId")
    encounter = context.get("encounterId")
    if encounter is not None and not (isinstance(encounter, str) and FHIR_ID.fullmatch(encounter)):
        raise InvalidRequest("context.encounterId must be a FHIR id", "context.encounterId")
    orders = _orders_bundle(context, service.hook.orders_field, max_draft_orders)
    selections = _selections(context, orders, max_draft_orders) if service.hook.selections else None
    server, token = _fhir_server(body)
    return HookCall(
        service=service,
        hook_instance=hook_instance,
        patient_id=patient_id,
        user_id=user_id,
        context=context,
        draft_orders=orders,
        selections=selections,
        prefetch=_prefetch(body),
        fhir_server=server,
        access_token=token,
    )


_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:(?P<second>[0-9]{2})(\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})"
)


def _is_date_time(value: str) -> bool:
    """An RFC 3339 date-time with zone (seconds optional): the shape, and a real date, time and offset."""
    shape = _DATE_TIME.fullmatch(value)
    if shape is None:
        return False
    if shape["second"] == "60":  # RFC 3339 allows a leap second; datetime has none
        value = value[: shape.start("second")] + "59" + value[shape.end("second") :]
    try:
        datetime.fromisoformat(value)  # 3.11: takes "Z"; refuses month 13, hour 24+, offset 24:00+
    except ValueError:
        return False
    return True


# Accepted suggestions per feedback entry: a card of this service offers a handful.
MAX_ACCEPTED_SUGGESTIONS = 50


def validate_feedback(
    body: Any, *, max_entries: int = 100, max_comment_chars: int = 1000
) -> list[dict[str, Any]]:
    """The feedback entries of a 2.0 feedback body, or a 400 naming the first problem.

    Bounded before anything reaches the database: more than ``max_entries`` entries, a comment longer
    than ``max_comment_chars`` characters or more than ``MAX_ACCEPTED_SUGGESTIONS`` accepted suggestions
    in one entry is a 413 naming the limit (nothing is stored, nothing truncated).
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the feedback body must be a JSON object")
    items = _require(body, "feedback", list, "feedback")
    if not items:
        raise InvalidRequest("feedback must hold at least one entry", "feedback")
    if len(items) > max_entries:
        raise _too_large(
            f"feedback holds {len(items)} entries; at most {max_entries} per request "
            "(CDS_FEEDBACK_MAX_ENTRIES): send them in several requests",
            "feedback",
        )
    for index, item in enumerate(items):
        where = f"feedback[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where} must be a JSON object", where)
        _require(item, "card", str, f"{where}.card")
        outcome = _require(item, "outcome", str, f"{where}.outcome")
        if outcome not in {"accepted", "overridden"}:
            raise InvalidRequest(f"{where}.outcome must be accepted or overridden", f"{where}.outcome")
        timestamp = _require(item, "outcomeTimestamp", str, f"{where}.outcomeTimestamp")
        if not _is_date_time(timestamp):
            raise InvalidRequest(
                f"{where}.outcomeTimestamp must be an ISO 8601 date-time with zone",
                f"{where}.outcomeTimestamp",
            )
        if outcome == "accepted":
            accepted = _require(item, "acceptedSuggestions", list, f"{where}.acceptedSuggestions")
            if len(accepted) > MAX_ACCEPTED_SUGGESTIONS:
                path = f"{where}.acceptedSuggestions"
                raise _too_large(
                    f"{path} holds {len(accepted)} suggestions; at most {MAX_ACCEPTED_SUGGESTIONS}", path
                )
            for number, suggestion in enumerate(accepted):
                if not isinstance(suggestion, dict) or not isinstance(suggestion.get("id"), str):
                    path = f"{where}.acceptedSuggestions[{number}].id"
                    raise InvalidRequest(f"{path} is required", path)
        reason = item.get("overrideReason")
        if reason is not None:
            if not isinstance(reason, dict):
                raise InvalidRequest(
                    f"{where}.overrideReason must be a JSON object", f"{where}.overrideReason"
                )
            coding = reason.get("reason")
            if coding is not None and not (
                isinstance(coding, dict) and isinstance(coding.get("code"), str) and coding.get("code")
            ):
                path = f"{where}.overrideReason.reason"
                raise InvalidRequest(f"{path} must be a Coding with a code", path)
            comment = reason.get("userComment")
            if comment is not None and not isinstance(comment, str):
                path = f"{where}.overrideReason.userComment"
                raise InvalidRequest(f"{path} must be a string", path)
            if isinstance(comment, str) and len(comment) > max_comment_chars:
                path = f"{where}.overrideReason.userComment"
                raise _too_large(
                    f"{path} is {len(comment)} characters long; at most {max_comment_chars} "
                    "(CDS_FEEDBACK_MAX_COMMENT_CHARS)",
                    path,
                )
    return items


def _too_large(diagnostics: str, field: str) -> CdsError:
    return CdsError(413, diagnostics, expression=[field])
