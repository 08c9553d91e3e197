"""Evaluate a saved CDS Hooks request without a server and without the network.

Shared by ``cds-service evaluate`` and the preview page so both give exactly the service's answer for a
request whose prefetch is complete. Missing prefetch keys are reported as unavailable, as the service
does when the EHR sends no ``fhirServer``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from cds_service import pipeline
from cds_service.hooks.errors import CdsError, InvalidRequest
from cds_service.hooks.prefetch import ResolvedData
from cds_service.hooks.services import SERVICES, ServiceDefinition
from cds_service.hooks.validation import HookCall, validate_call
from cds_service.knowledge.loader import Knowledge
from cds_service.patient_data import resolve
from cds_service.rules.base import Options


@dataclass(frozen=True)
class Evaluation:
    call: HookCall
    outcome: pipeline.Outcome


def service_for(body: Any, service_id: str | None = None) -> ServiceDefinition:
    """The service a request is for: the one named, else the one answering the request's hook."""
    if service_id is not None:
        if service_id not in SERVICES:
            known = ", ".join(SERVICES)
            raise InvalidRequest(f"no service {service_id!r}; known services: {known}")
        return SERVICES[service_id]
    hook = body.get("hook") if isinstance(body, Mapping) else None
    for service in SERVICES.values():
        if service.hook.hook == hook:
            return service
    hooks = ", ".join(s.hook.hook for s in SERVICES.values())
    raise InvalidRequest(f"the request's hook {hook!r} is not one this service answers ({hooks})", "hook")


def _refuse_network(_: str) -> None:
    raise CdsError(403, "offline evaluation never calls a FHIR server")


def offline_fetch(templates: Mapping[str, str]) -> Any:
    """A fetch for ``pipeline.run`` that uses prefetch only, as if the request had no fhirServer."""

    def fetch(call: HookCall) -> ResolvedData:
        offline = dataclasses.replace(call, fhir_server=None, access_token=None)
        return resolve(offline, templates, client=None, authorize_server=_refuse_network)  # type: ignore[arg-type]

    return fetch


def evaluate_request(
    body: Any,
    knowledge: Knowledge,
    templates: Mapping[str, str],
    *,
    options: Options | None = None,
    service_id: str | None = None,
    today: date | None = None,
) -> Evaluation:
    """Validate ``body`` like the endpoint does and run the rules. Raises CdsError as the endpoint would."""
    service = service_for(body, service_id)
    call = validate_call(body, service)
    outcome = pipeline.run(call, knowledge, offline_fetch(templates), today=today, options=options)
    return Evaluation(call=call, outcome=outcome)
