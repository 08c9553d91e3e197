"""CDS Hooks 2.0.1 prefetch semantics, as a plan: what is usable as sent, what to fetch, and why.

For each key the service advertises:
- absent: the EHR did not satisfy it — query ``fhirServer`` (with the EHR's bearer token);
- ``null``: the EHR has no such data — nothing to fetch, the key is empty;
- an OperationOutcome: the EHR failed to get it — query it ourselves;
- a searchset Bundle with a ``next`` link: read the remaining pages from ``fhirServer``.
What cannot be had either way is reported per key, so the rules can say which checks did not run.

Medications by reference: a draft or current order whose ``medicationReference`` names a Medication that
is neither contained nor in the request (draftOrders, the medications prefetch) is unidentified. After
the keys, every such Medication is fetched from ``fhirServer`` in ONE query (``Medication?_id=a,b,c``);
what cannot be had is kept per reference with the reason, so the order can be named as one whose drug
is unknown.

Everything here is pure (no I/O): ``cds_service.patient_data`` carries a plan out against the FHIR server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from cds_service.fhir_client import bundle_problem, next_link
from cds_service.hooks.raw_json import decoded
from cds_service.hooks.validation import HookCall
from cds_service.knowledge.classify import medication_reference, reference_key
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


@dataclass
class PrefetchPlan:
    """What to do with each advertised key: read it as sent, fetch it, or report it unavailable."""

    usable: dict[str, Any] = field(default_factory=dict)  # key -> value as sent (decoded), read as is
    # key -> the query to run on fhirServer, or a sent Bundle whose next pages are to be read
    fetch: dict[str, str | dict[str, Any]] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)  # key in fetch -> why it is fetched
    unavailable: dict[str, str] = field(default_factory=dict)  # key -> why it can be had neither way


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


def plan_prefetch(call: HookCall, templates: Mapping[str, str]) -> PrefetchPlan:
    """Decide, for each advertised key, whether the sent value is read as is, fetched or paged on.

    Only the advertised keys are decoded (once, here); anything else the EHR sent stays unread."""
    plan = PrefetchPlan()
    for key, template in templates.items():
        problem = None
        if key in call.prefetch:
            sent = decoded(call.prefetch[key], f"prefetch.{key}")
            problem = _unusable(sent, call.patient_id)
            if problem is None:
                plan.usable[key] = sent
                if isinstance(sent, Mapping) and sent.get("resourceType") == "Bundle" and next_link(sent):
                    plan.fetch[key] = dict(sent)
                    plan.why[key] = "only the first page of results was sent"
                continue
        query = fill_template(template, call.context, call.user_id)
        if query is None:
            plan.unavailable[key] = "its query needs a context value the request did not carry"
        else:
            plan.fetch[key] = query
            plan.why[key] = problem or "not in prefetch"
    if call.fhir_server is None:  # nothing can be fetched: each key to fetch is reported with its reason
        for key, job in plan.fetch.items():
            plan.usable.pop(key, None)
            plan.unavailable[key] = (
                f"{plan.why[key]} and there is no fhirServer to read the rest"
                if isinstance(job, dict)
                else f"{plan.why[key]} and no fhirServer was given"
            )
        plan.fetch.clear()
        plan.why.clear()
    return plan


# The spec leaves it to the service to check prefetch against its template: judging one patient's order
# on another's record would be worse than not judging it.
ANOTHER_PATIENT = "it holds data about a patient other than context.patientId"


def _unusable(value: Any, patient_id: str | None) -> str | None:
    """Why a sent prefetch value must be fetched again (or reported), or None when it can be read."""
    if not isinstance(value, Mapping):
        return None
    kind = value.get("resourceType")
    if kind == "OperationOutcome":
        return "the EHR reported an error for it in prefetch"
    if kind != "Bundle":
        return ANOTHER_PATIENT if patient_id and _about_another_patient(value, patient_id) else None
    if problem := bundle_problem(value):
        return problem
    if not patient_id:
        return None
    own = f"Patient/{patient_id}"
    for entry in value.get("entry") or ():
        resource = entry.get("resource")
        # The usual entry, once and cheaply: a subject that is this patient by a relative reference.
        subject = resource.get("subject") if type(resource) is dict else None
        if (
            type(subject) is dict
            and subject.get("reference") == own
            and "patient" not in resource
            and resource.get("resourceType") != "Patient"
        ):
            continue
        if _about_another_patient(resource, patient_id):
            return ANOTHER_PATIENT
    return None


def _about_another_patient(resource: Any, patient_id: str) -> bool:
    if not isinstance(resource, Mapping):
        return False
    if resource.get("resourceType") == "Patient":
        return resource.get("id") not in (None, patient_id)
    own = f"/Patient/{patient_id}"
    for element in ("subject", "patient"):
        value = resource.get(element)
        if value is None:
            continue
        # An absolute reference to this very patient needs no splitting either.
        text = value.get("reference") if type(value) is dict else None
        if isinstance(text, str) and (text == own[1:] or text.endswith(own)):
            continue
        kind, _, ident = (reference_to(value) or "").partition("/")
        if kind == "Patient" and ident != patient_id:
            return True
    return False


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


@dataclass
class MedicationPlan:
    ids: dict[str, str] = field(default_factory=dict)  # "Medication/x" -> x, to fetch in one query
    unresolved: dict[str, str] = field(default_factory=dict)  # "Medication/x" -> why it is not fetched

    def query(self) -> str:
        return "Medication?_id=" + ",".join(self.ids.values())


def plan_medications(call: HookCall, medications_value: Any) -> MedicationPlan:
    """Which referenced Medications to fetch by id, and why the others cannot be."""
    plan = MedicationPlan()
    wanted = medication_references(call, medications_value)
    if call.fhir_server is None:
        plan.unresolved.update(dict.fromkeys(wanted, "is not in the request and no fhirServer was given"))
        return plan
    for key, ref in sorted(wanted.items()):
        problem = _unfetchable(key, ref, call.fhir_server)
        if problem is None and len(plan.ids) >= MAX_MEDICATION_IDS:
            problem = f"was not fetched: more than {MAX_MEDICATION_IDS} Medications are referenced"
        if problem is None:
            plan.ids[key] = key.partition("/")[2]
        else:
            plan.unresolved[key] = problem
    return plan


def _unfetchable(key: str, ref: str, fhir_server: str) -> str | None:
    kind, _, ident = key.partition("/")
    if kind != "Medication" or not FHIR_ID.fullmatch(ident):
        return "does not name a Medication by a valid id"
    if "://" in ref and not ref.startswith(fhir_server.rstrip("/") + "/Medication/"):
        return "points outside the FHIR server (the token goes to fhirServer only)"
    return None
