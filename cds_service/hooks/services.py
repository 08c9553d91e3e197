"""The three CDS services this server offers, and the data each asks the EHR to prefetch.

Declared in one place so discovery, the fallback queries and the error policy cannot drift apart
(HAPI FHIR's CDS Hooks module does the same). Every template uses only 2.0 tokens
(``{{context.patientId}}``) and the 2.0 query subset (reference and token parameters, ``_sort``).
Observation codes come from the ValueSets in ``cards/valuesets`` so a pharmacist who adds a LOINC code
there changes the query too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cds_service.knowledge.loader import Knowledge

PATIENT_TOKEN = "{{context.patientId}}"


# Observation keys -> the ValueSet whose codes the query asks for.
_OBSERVATION_VALUESETS = {
    "weight": "body-weight-observations",
    "renal": "renal-function-observations",
    "nat2": "nat2-observations",
}


@dataclass(frozen=True)
class HookSpec:
    """What a hook's context holds: the field with draft orders and whether selections apply."""

    hook: str
    orders_field: str  # draftOrders (order-select, order-sign) or medications (medication-prescribe)
    selections: bool  # order-select names the orders in question in context.selections


HOOKS: Mapping[str, HookSpec] = {
    "order-select": HookSpec("order-select", "draftOrders", selections=True),
    "order-sign": HookSpec("order-sign", "draftOrders", selections=False),
    "medication-prescribe": HookSpec("medication-prescribe", "medications", selections=False),
}


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: HookSpec
    title: str
    description: str


SERVICES: Mapping[str, ServiceDefinition] = {
    service.id: service
    for service in (
        ServiceDefinition(
            id="amifampridine-order-select",
            hook=HOOKS["order-select"],
            title="Amifampridine safety check (order select)",
            description=(
                "Checks a newly selected amifampridine (Firdapse) order, or a drug that interacts with it, "
                "against the FDA label: seizure history, aminopyridine allergy, age, interacting "
                "co-medication, NAT2 status, renal and hepatic impairment, and dose limits."
            ),
        ),
        ServiceDefinition(
            id="amifampridine-order-sign",
            hook=HOOKS["order-sign"],
            title="Amifampridine safety check (order sign)",
            description=(
                "Checks every amifampridine (Firdapse) order being signed, and drugs that interact with it, "
                "against the FDA label before signature, including the final dose and frequency."
            ),
        ),
        ServiceDefinition(
            id="amifampridine-medication-prescribe",
            hook=HOOKS["medication-prescribe"],
            title="Amifampridine safety check (medication-prescribe, deprecated hook)",
            description=(
                "The same checks for EHRs that still fire the deprecated medication-prescribe hook "
                "(STU3 MedicationRequest or DSTU2 MedicationOrder in context.medications)."
            ),
        ),
    )
}


def _codes(knowledge: Knowledge, valueset: str) -> str:
    matcher = knowledge.valueset(valueset)
    tokens = sorted(f"{system}|{code}" for system, codes in matcher.codes.items() for code in codes)
    return ",".join(tokens)


def prefetch_templates(knowledge: Knowledge) -> dict[str, str]:
    """Prefetch key -> FHIR query template, as advertised in discovery."""
    p = PATIENT_TOKEN
    templates = {
        "patient": f"Patient/{p}",
        "medications": f"MedicationRequest?patient={p}&status=active",
        # Every condition, whatever its status: a resolved seizure disorder is still a history of seizures.
        "conditions": f"Condition?patient={p}",
        "allergies": f"AllergyIntolerance?patient={p}",
    }
    for key, valueset in _OBSERVATION_VALUESETS.items():
        templates[key] = f"Observation?patient={p}&code={_codes(knowledge, valueset)}&_sort=-date"
    return templates


def discovery_document(knowledge: Knowledge) -> dict[str, list[dict[str, object]]]:
    templates = prefetch_templates(knowledge)
    return {
        "services": [
            {
                "hook": service.hook.hook,
                "id": service.id,
                "title": service.title,
                "description": service.description,
                "prefetch": templates,
                "usageRequirements": (
                    "Send prefetch from these templates, or fhirServer with fhirAuthorization so the "
                    "service can query what is missing."
                ),
            }
            for service in SERVICES.values()
        ]
    }
