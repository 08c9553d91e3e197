"""An EHR simulator: what an EHR does for one hook call, against a real FHIR server and a real service.

1. read the service's discovery document and pick the service for the hook;
2. fill its prefetch templates for the patient and run them against the FHIR server (every page);
3. sign a client JWT when a private key is given (PEM or JWK; see cds_service.security.keys);
4. POST the hook call and return the cards.

Tokens and patient data are never logged; the FHIR token (if any) goes to the FHIR server and, as
``fhirAuthorization``, to the service only.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import jwt
import requests

from cds_service.fhir_client import next_link
from cds_service.protocol.prefetch import fill_template
from cds_service.protocol.services import HOOKS
from cds_service.security.keys import SigningKey, jwk_thumbprint, load_signing_key

__all__ = ["SigningKey", "SimulateOptions", "Simulation", "jwk_thumbprint", "load_signing_key", "simulate"]

FHIR_JSON = "application/fhir+json"
DEFAULT_SERVICE_URL = "http://127.0.0.1:8080"
DEFAULT_USER = "Practitioner/simulated-prescriber"
MAX_PAGES = 50


class SimulatorError(Exception):
    """The simulation could not be completed; the message says which step failed and why."""


@dataclass(frozen=True)
class SimulateOptions:
    fhir_server: str
    patient_id: str
    order: Mapping[str, Any]  # a MedicationRequest (or MedicationOrder), or a Bundle of draft orders
    hook: str = "order-sign"
    service_url: str = DEFAULT_SERVICE_URL
    user_id: str = DEFAULT_USER
    key: SigningKey | None = None
    iss: str | None = None
    tenant: str | None = None
    fhir_token: str | None = None  # bearer token for the FHIR server, passed on as fhirAuthorization
    send_prefetch: bool = True  # False: the service must query the FHIR server itself
    send_fhir_server: bool = True  # False: prefetch only, the service cannot query anything
    collect_prefetch: bool = False  # read the prefetch data even when not sending it (for --explain)
    timeout: float = 15.0


@dataclass
class Simulation:
    service_id: str
    endpoint: str
    request: dict[str, Any]  # the body as posted (the FHIR token masked)
    status: int
    response: Any
    prefetch_counts: dict[str, int] = field(default_factory=dict)  # key -> resources sent in prefetch
    prefetch: dict[str, Any] | None = field(default=None, repr=False)  # what the templates gave
    elapsed_ms: float = 0.0
    # False: the FHIR server answered 404 to Patient/<id> (a mistyped --patient?); None: not known
    patient_found: bool | None = True

    @property
    def warnings(self) -> list[str]:
        """What the user must know beside the cards (also in ``--json`` as ``warnings``)."""
        if self.patient_found is not False:
            return []
        patient = self.request.get("context", {}).get("patientId")
        return [
            f"the FHIR server has no Patient/{patient} (HTTP 404 to the Patient read): the cards are for a "
            "patient it does not know; check --patient"
        ]


# --- tokens ------------------------------------------------------------------------------------------


def client_token(key: SigningKey, iss: str, audience: str, tenant: str | None = None) -> str:
    """A CDS Hooks 2.0 client JWT for one call: aud is the exact endpoint URL, a fresh jti, 5 minutes."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": iss,
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    if tenant:
        claims["tenant"] = tenant
    return jwt.encode(claims, key.private_key, algorithm=key.alg, headers={"typ": "JWT", "kid": key.kid})


# --- the FHIR side ---------------------------------------------------------------------------------


class FhirReader:
    """Reads what an EHR would prefetch: every page of a search, a 404 read as no data."""

    def __init__(self, base_url: str, session: requests.Session, token: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.session = session
        self.token = token
        self.timeout = timeout

    def _get(self, url: str) -> dict[str, Any] | None:
        headers = {"Accept": FHIR_JSON}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.session.get(url, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise SimulatorError(f"FHIR server {self.base_url} unreachable ({type(exc).__name__})") from exc
        if response.status_code == 404 and "?" not in url:
            return None
        if response.status_code != 200:
            raise SimulatorError(f"FHIR server answered HTTP {response.status_code} to {_path(url)}")
        return response.json()

    def read(self, query: str) -> Any:
        first = self._get(urljoin(self.base_url, query))
        if first is None or first.get("resourceType") != "Bundle":
            return first
        entries = list(first.get("entry") or [])
        page, pages = first, 1
        while (url := next_link(page)) is not None and pages < MAX_PAGES:
            page = self._get(url) or {}
            entries.extend(page.get("entry") or [])
            pages += 1
        bundle = {k: v for k, v in first.items() if k not in {"entry", "link"}}
        bundle["total"] = len(entries)
        bundle["entry"] = entries
        return bundle


def _path(url: str) -> str:
    # Only the path goes into messages: the query string names the patient.
    return urlsplit(url).path


def fill_prefetch(
    templates: Mapping[str, str], context: Mapping[str, Any], user_id: str, reader: FhirReader
) -> dict[str, Any]:
    """Prefetch key -> the server's answer to its filled template; keys that cannot be filled are left out."""
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        query = fill_template(template, context, user_id)
        if query is not None:
            prefetch[key] = reader.read(query)
    return prefetch


# --- the hook call ---------------------------------------------------------------------------------


def draft_orders(order: Mapping[str, Any], patient_id: str) -> list[dict[str, Any]]:
    """The order(s) of an ORDER.json as draft resources for this patient (ids and subject filled in)."""
    if not isinstance(order, Mapping):
        raise SimulatorError("the order file must hold a FHIR resource or a Bundle of them")
    if order.get("resourceType") == "Bundle":
        resources = [e.get("resource") for e in order.get("entry") or [] if isinstance(e, Mapping)]
    else:
        resources = [order]
    drafts = []
    for number, resource in enumerate(resources, start=1):
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            raise SimulatorError("the order file must hold a FHIR resource or a Bundle of them")
        draft = copy.deepcopy(dict(resource))
        if draft["resourceType"] == "Medication":
            drafts.append(draft)
            continue
        draft.setdefault("id", f"simulated-order-{number}")
        draft.setdefault("status", "draft")
        draft.setdefault("intent", "order")
        subject = "patient" if draft["resourceType"] == "MedicationOrder" else "subject"
        draft.setdefault(subject, {"reference": f"Patient/{patient_id}"})
        drafts.append(draft)
    return drafts


def build_request(
    hook: str,
    patient_id: str,
    user_id: str,
    drafts: Sequence[Mapping[str, Any]],
    *,
    prefetch: Mapping[str, Any] | None,
    fhir_server: str | None,
    fhir_token: str | None = None,
) -> dict[str, Any]:
    spec = HOOKS.get(hook)
    if spec is None:
        raise SimulatorError(f"hook {hook!r} is not one of {', '.join(HOOKS)}")
    context: dict[str, Any] = {
        "userId": user_id,
        "patientId": patient_id,
        spec.orders_field: {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": dict(resource)} for resource in drafts],
        },
    }
    if spec.selections:
        context["selections"] = [
            f"{r['resourceType']}/{r['id']}" for r in drafts if r["resourceType"] != "Medication"
        ]
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if fhir_server:
        body["fhirServer"] = fhir_server
        if fhir_token:
            body["fhirAuthorization"] = {
                "access_token": fhir_token,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "patient/*.read",
                "subject": "cds-service",
            }
    if prefetch is not None:
        body["prefetch"] = dict(prefetch)
    return body


def _services_base(service_url: str) -> str:
    base = service_url.rstrip("/")
    return base.removesuffix("/cds-services")


def _headers(options: SimulateOptions, audience: str) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if options.key is not None:
        if not options.iss:
            raise SimulatorError("--iss is required with --key (the issuer the service trusts)")
        headers["Authorization"] = (
            f"Bearer {client_token(options.key, options.iss, audience, options.tenant)}"
        )
    return headers


def discover(session: requests.Session, options: SimulateOptions) -> tuple[str, Mapping[str, str]]:
    """The id and prefetch templates of the service answering ``options.hook``."""
    url = f"{_services_base(options.service_url)}/cds-services"
    try:
        response = session.get(url, headers=_headers(options, url), timeout=options.timeout)
    except requests.RequestException as exc:
        raise SimulatorError(f"service {url} unreachable ({type(exc).__name__})") from exc
    if response.status_code != 200:
        raise SimulatorError(f"discovery {url} answered HTTP {response.status_code}: {response.text[:300]}")
    services = response.json().get("services") or []
    for service in services:
        if service.get("hook") == options.hook:
            return str(service["id"]), dict(service.get("prefetch") or {})
    hooks = ", ".join(sorted({str(s.get("hook")) for s in services}))
    raise SimulatorError(f"the service offers no {options.hook} service (it offers: {hooks})")


def simulate(options: SimulateOptions, session: requests.Session | None = None) -> Simulation:
    session = session or requests.Session()
    drafts = draft_orders(options.order, options.patient_id)  # a broken order file fails before any call
    service_id, templates = discover(session, options)
    spec = HOOKS[options.hook]
    context = {"patientId": options.patient_id, "userId": options.user_id, spec.orders_field: {}}
    prefetch = None
    reader = FhirReader(options.fhir_server, session, options.fhir_token, options.timeout)
    if options.send_prefetch or options.collect_prefetch:
        prefetch = fill_prefetch(templates, context, options.user_id, reader)
    patient_found = _patient_found(reader, prefetch, options.patient_id)
    sent = prefetch if options.send_prefetch else None
    body = build_request(
        options.hook,
        options.patient_id,
        options.user_id,
        drafts,
        prefetch=sent,
        fhir_server=options.fhir_server if options.send_fhir_server else None,
        fhir_token=options.fhir_token,
    )
    endpoint = f"{_services_base(options.service_url)}/cds-services/{service_id}"
    headers = _headers(options, endpoint)
    started = time.monotonic()
    try:
        response = session.post(endpoint, json=body, headers=headers, timeout=options.timeout)
    except requests.RequestException as exc:
        raise SimulatorError(f"service {endpoint} unreachable ({type(exc).__name__})") from exc
    elapsed = (time.monotonic() - started) * 1000
    try:
        answer: Any = response.json()
    except ValueError:
        answer = {"text": response.text[:2000]}
    return Simulation(
        service_id=service_id,
        endpoint=endpoint,
        request=_masked(body),
        status=response.status_code,
        response=answer,
        prefetch_counts={key: _count(value) for key, value in (sent or {}).items()},
        prefetch=prefetch,
        elapsed_ms=elapsed,
        patient_found=patient_found,
    )


def _patient_found(reader: FhirReader, prefetch: Mapping[str, Any] | None, patient_id: str) -> bool | None:
    """Whether the FHIR server knows the patient: from the prefetched Patient, else one read of it.

    None when that read fails otherwise: without prefetch the call goes on, and the service's own
    reads (and its cards) say what it could not get.
    """
    if prefetch is not None and "patient" in prefetch:
        patient = prefetch["patient"]
    else:
        try:
            patient = reader.read(f"Patient/{quote(patient_id, safe='')}")
        except (SimulatorError, ValueError):
            return None
    return isinstance(patient, Mapping) and patient.get("resourceType") == "Patient"


def _count(value: Any) -> int:
    if not isinstance(value, Mapping):
        return 0
    if value.get("resourceType") == "Bundle":
        return len(value.get("entry") or [])
    return 1


def _masked(body: Mapping[str, Any]) -> dict[str, Any]:
    masked = copy.deepcopy(dict(body))
    if "fhirAuthorization" in masked:
        masked["fhirAuthorization"]["access_token"] = "***"
    return masked
