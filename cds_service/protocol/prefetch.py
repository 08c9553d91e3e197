"""CDS Hooks 2.0.1 prefetch semantics, with the FHIR server as fallback.

For each key the service advertises:
- absent: the EHR did not satisfy it — query ``fhirServer`` (with the EHR's bearer token);
- ``null``: the EHR has no such data — nothing to fetch, the key is empty;
- an OperationOutcome: the EHR failed to get it — query it ourselves;
- a searchset Bundle with a ``next`` link: read the remaining pages from ``fhirServer``.
What cannot be had either way is reported per key, so the rules can say which checks did not run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cds_service.fhir_client import FhirClient, bundle_problem, next_link
from cds_service.protocol.raw_json import decoded
from cds_service.protocol.validation import HookCall
from cds_service.record import reference_to

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
    if not jobs:
        return data
    if call.fhir_server is None:
        for key in jobs:
            data.values.pop(key, None)
            data.unavailable[key] = _why_not_fetched(sent.get(key), key in sent, call.patient_id)
        return data
    authorize_server(call.fhir_server)  # raises 403 before any outbound request
    results = client.fetch_all(call.fhir_server, jobs, call.access_token)
    for key, result in results.items():
        if result.error is None:
            data.values[key] = result.value
            data.fetched.append(key)
        else:
            data.values.pop(key, None)
            data.unavailable[key] = result.error
    return data
