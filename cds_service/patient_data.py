"""The patient data for one call: the prefetch plan (``hooks.prefetch``) carried out against fhirServer.

The keys to fetch go out in parallel with the EHR's token, under the allow-list, the call's deadline and
its byte budget; then the Medications orders name by reference, in one ``Medication?_id=`` query under
the same limits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cds_service.data_keys import MEDICATION_REFERENCES
from cds_service.fhir_client import CallLimits, FhirClient
from cds_service.hooks.prefetch import ResolvedData, plan_medications, plan_prefetch
from cds_service.hooks.validation import HookCall
from cds_service.record import bundle_resources


def resolve(
    call: HookCall,
    templates: Mapping[str, str],
    client: FhirClient,
    authorize_server: Callable[[str], None],
) -> ResolvedData:
    """Prefetch as sent, plus the FHIR server for what is missing, failed or paginated."""
    plan = plan_prefetch(call, templates)
    data = ResolvedData(values=plan.usable, unavailable=plan.unavailable)
    limits: CallLimits | None = None
    if plan.fetch and call.fhir_server is not None:
        authorize_server(call.fhir_server)  # raises 403 before any outbound request
        limits = client.start_call()
        results = client.fetch_all(call.fhir_server, plan.fetch, call.access_token, limits)
        for key, result in results.items():
            if result.error is None:
                data.values[key] = result.value
                data.fetched.append(key)
            else:
                data.values.pop(key, None)
                data.unavailable[key] = result.error
    _fetch_medications(call, client, authorize_server, data, limits)
    return data


def _fetch_medications(
    call: HookCall,
    client: FhirClient,
    authorize_server: Callable[[str], None],
    data: ResolvedData,
    limits: CallLimits | None,
) -> None:
    plan = plan_medications(call, data.values.get("medications"))
    data.unresolved.update(plan.unresolved)
    if not plan.ids or call.fhir_server is None:
        return
    authorize_server(call.fhir_server)
    result = client.fetch_all(
        call.fhir_server,
        {MEDICATION_REFERENCES: plan.query()},
        call.access_token,
        limits or client.start_call(),
    )[MEDICATION_REFERENCES]
    if result.error is not None:
        data.unresolved.update(dict.fromkeys(plan.ids, f"could not be fetched: {result.error}"))
        return
    found = {
        f"Medication/{r.get('id')}": r
        for r in bundle_resources(result.value)
        if r.get("resourceType") == "Medication" and f"Medication/{r.get('id')}" in plan.ids
    }
    for key in plan.ids:
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
