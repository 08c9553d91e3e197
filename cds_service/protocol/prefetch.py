"""CDS Hooks 2.0.1 prefetch semantics, with the FHIR server as fallback.

For each key the service advertises:
- absent: the EHR did not satisfy it — query ``fhirServer`` (with the EHR's bearer token);
- ``null``: the EHR has no such data — nothing to fetch, the key is empty;
- an OperationOutcome: the EHR failed to get it — query it ourselves;
- a searchset Bundle with a ``next`` link: read the remaining pages from ``fhirServer``.
What cannot be had either way is reported per key, so the rules can say which checks did not run.

Medications by reference: a draft or current order whose ``medicationReference`` names a Medication that
is neither contained nor in the request (draftOrders, the medications prefetch) is unidentified. After
the keys, every such Medication is fetched from ``fhirServer`` in ONE query (``Medication?_id=a,b,c``),
with the same token, allow-list, deadline and byte budget as the keys; what still cannot be had is kept
per reference with the reason, so the order can be named as one whose drug is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cds_service.data_keys import MEDICATION_REFERENCES
from cds_service.fhir_client import CallLimits, FhirClient, bundle_problem, next_link
from cds_service.knowledge.classify import medication_reference, reference_key
from cds_service.protocol.raw_json import decoded
from cds_service.protocol.validation import HookCall
from cds_service.record import CURRENT_STATUSES, ORDER_TYPES, bundle_resources, reference_to

TOKEN = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_.]*)\s*\}\}")
USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


@dataclass
class ResolvedData:
    values: dict[str, Any] = field(default_factory=dict)  # key -> resource, Bundle or None
    unavailable: dict[str, str] = field(default_factory=dict)  # key -> why it could not be had
    fetched: list[str] = field(default_factory=list)  # keys read from the FHIR server
    # Medications that orders reference, fetched by id ("Medication/x" -> resource) ...
    medications: dict[str, Any] = field(default_factory=dict)
    # ... and those that could not be had ("Medication/x" -> why, to follow the reference in a sentence).
    unresolved: dict[str, str] = field(default_factory=dict)


# One query names at most this many Medications (ids of up to 64 characters keep its URL under ~7 KB).
MAX_MEDICATION_IDS = 100
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def fill_template(template: str, context: Mapping[str, Any], user_id: str) -> str | None:
    """Replace 2.0 prefetch tokens; None when a token has no value (the query cannot be made)."""
    user_type, _, user_ref_id = user_id.partition("/")
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name.startswith("context."):
            value = context.get(name.removeprefix("context."))
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                return quote(str(value), safe="")
        elif USER_TOKENS.get(name) == user_type and user_ref_id:
            return quote(user_ref_id, safe="")
        missing = True
        return ""

    filled = TOKEN.sub(substitute, template)
    return None if missing else filled


def _is_operation_outcome(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get("resourceType") == "OperationOutcome"


def _unusable(value: Any, patient_id: str | None) -> str | None:
    """Why a sent prefetch value must be fetched again (or reported), or None when it can be read."""
    if _is_operation_outcome(value):
        return "the EHR reported an error for it in prefetch"
    if not isinstance(value, Mapping):
        return None
    if value.get("resourceType") == "Bundle":
        problem = bundle_problem(value)
        resources = [e.get("resource") for e in value.get("entry") or ()] if problem is None else []
    else:
        problem, resources = None, [value]
    if problem is None and patient_id and any(_about_another_patient(r, patient_id) for r in resources):
        # The spec leaves it to the service to check prefetch against its template: judging one patient's
        # order on another's record would be worse than not judging it.
        problem = "it holds data about a patient other than context.patientId"
    return problem


def _about_another_patient(resource: Any, patient_id: str) -> bool:
    if not isinstance(resource, Mapping):
        return False
    if resource.get("resourceType") == "Patient":
        return resource.get("id") not in (None, patient_id)
    for element in ("subject", "patient"):
        kind, _, ident = (reference_to(resource.get(element)) or "").partition("/")
        if kind == "Patient" and ident != patient_id:
            return True
    return False


def _why_not_fetched(sent: Any, present: bool, patient_id: str | None) -> str:
    if not present:
        return "not in prefetch and no fhirServer was given"
    if problem := _unusable(sent, patient_id):
        return f"{problem} and no fhirServer was given"
    return "only the first page of results was sent and there is no fhirServer to read the rest"


def resolve(
    call: HookCall,
    templates: Mapping[str, str],
    client: FhirClient,
    authorize_server: Callable[[str], None],
) -> ResolvedData:
    """Prefetch as sent, plus the FHIR server for what is missing, failed or paginated."""
    data = ResolvedData()
    jobs: dict[str, str | dict[str, Any]] = {}
    # Only the advertised keys are decoded (once, here); anything else the EHR sent stays unread.
    sent = {key: decoded(call.prefetch[key], f"prefetch.{key}") for key in templates if key in call.prefetch}
    for key, template in templates.items():
        if key in sent and not _unusable(sent[key], call.patient_id):
            value = sent[key]
            data.values[key] = value
            if isinstance(value, Mapping) and value.get("resourceType") == "Bundle" and next_link(value):
                jobs[key] = dict(value)
            continue
        query = fill_template(template, call.context, call.user_id)
        if query is None:
            data.unavailable[key] = "its query needs a context value the request did not carry"
        else:
            jobs[key] = query
    limits: CallLimits | None = None
    if jobs and call.fhir_server is None:
        for key in jobs:
            data.values.pop(key, None)
            data.unavailable[key] = _why_not_fetched(sent.get(key), key in sent, call.patient_id)
    elif jobs and call.fhir_server is not None:
        authorize_server(call.fhir_server)  # raises 403 before any outbound request
        limits = client.start_call()
        results = client.fetch_all(call.fhir_server, jobs, call.access_token, limits)
        for key, result in results.items():
            if result.error is None:
                data.values[key] = result.value
                data.fetched.append(key)
            else:
                data.values.pop(key, None)
                data.unavailable[key] = result.error
    _fetch_medications(call, client, authorize_server, data, limits)
    return data


def medication_references(call: HookCall, medications_value: Any) -> dict[str, str]:
    """ "Medication/x" -> the reference as written, for each Medication a draft or current order names
    that neither the drafts nor the medications prefetch hold (contained ones are never fetched)."""
    known: set[str] = set()
    wanted: dict[str, str] = {}
    record = bundle_resources(medications_value)
    current = [r for r in record if r.get("status") in CURRENT_STATUSES]
    for resource in [*call.draft_orders, *record]:
        kind = resource.get("resourceType")
        if kind == "Medication" and isinstance(resource.get("id"), str):
            known.add(f"Medication/{resource['id']}")
    for resource in [*call.draft_orders, *current]:
        ref = medication_reference(resource) if resource.get("resourceType") in ORDER_TYPES else None
        if ref and not ref.startswith("#"):
            wanted.setdefault(reference_key(ref), ref)
    return {key: ref for key, ref in wanted.items() if key not in known}


def _unfetchable(key: str, ref: str, fhir_server: str) -> str | None:
    kind, _, ident = key.partition("/")
    if kind != "Medication" or not FHIR_ID.fullmatch(ident):
        return "does not name a Medication by a valid id"
    if "://" in ref and not ref.startswith(fhir_server.rstrip("/") + "/Medication/"):
        return "points outside the FHIR server (the token goes to fhirServer only)"
    return None


def _fetch_medications(
    call: HookCall,
    client: FhirClient,
    authorize_server: Callable[[str], None],
    data: ResolvedData,
    limits: CallLimits | None,
) -> None:
    wanted = medication_references(call, data.values.get("medications"))
    if not wanted:
        return
    if call.fhir_server is None:
        data.unresolved.update(dict.fromkeys(wanted, "is not in the request and no fhirServer was given"))
        return
    ids: dict[str, str] = {}
    for key, ref in sorted(wanted.items()):
        problem = _unfetchable(key, ref, call.fhir_server)
        if problem is None and len(ids) >= MAX_MEDICATION_IDS:
            problem = f"was not fetched: more than {MAX_MEDICATION_IDS} Medications are referenced"
        if problem is None:
            ids[key] = key.partition("/")[2]
        else:
            data.unresolved[key] = problem
    if not ids:
        return
    authorize_server(call.fhir_server)
    query = "Medication?_id=" + ",".join(ids.values())
    result = client.fetch_all(
        call.fhir_server, {MEDICATION_REFERENCES: query}, call.access_token, limits or client.start_call()
    )[MEDICATION_REFERENCES]
    if result.error is not None:
        data.unresolved.update(dict.fromkeys(ids, f"could not be fetched: {result.error}"))
        return
    found = {
        f"Medication/{r.get('id')}": r
        for r in bundle_resources(result.value)
        if r.get("resourceType") == "Medication" and f"Medication/{r.get('id')}" in ids
    }
    for key in ids:
        if key not in found:
            data.unresolved[key] = "is not on the FHIR server"
    if found:
        data.medications.update(found)
        data.values[MEDICATION_REFERENCES] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in found.values()],
        }
        data.fetched.append(MEDICATION_REFERENCES)
