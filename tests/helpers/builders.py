"""Small builders for CDS Hooks requests, FHIR resources and rule contexts, shared by the tests."""

from __future__ import annotations

import copy
import functools
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from cds_service.knowledge.loader import Knowledge, load_knowledge
from cds_service.record import build_record, classify_order
from cds_service.rules.base import RuleContext

PATIENT_ID = "amf-test-patient"
ORDER_SIGN = "/cds-services/amifampridine-order-sign"
ORDER_SELECT = "/cds-services/amifampridine-order-select"
PRESCRIBE = "/cds-services/amifampridine-medication-prescribe"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


def searchset(*resources: dict[str, Any], next_url: str | None = None) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def patient(birth_date: str = "1970-04-12", gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": PATIENT_ID, "birthDate": birth_date, "gender": gender}


def amifampridine_order(order_id: str = "draft-amf", mg: float = 10, per_day: int = 3) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": "2026-11-22",
        "medicationCodeableConcept": {"text": "amifampridine 10 MG Oral Tablet"},
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": mg,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
    }


def ibuprofen_order(order_id: str = "draft-ibu") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": "197807",
                    "display": "Ibuprofen 800 MG Oral Tablet",
                }
            ]
        },
    }


def epilepsy(condition_id: str = "cond-epilepsy", **extra: Any) -> dict[str, Any]:
    condition = {
        "resourceType": "Condition",
        "id": condition_id,
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": "84757009", "display": "Epilepsy"}]},
        "onsetDateTime": "2004-06-01",
    }
    condition.update(extra)
    return condition


def empty_prefetch() -> dict[str, Any]:
    return {
        "patient": patient(),
        "medications": searchset(),
        "conditions": searchset(),
        "allergies": searchset(),
        "weight": searchset(),
        "renal": searchset(),
        "nat2": searchset(),
    }


def order_sign(
    *orders: dict[str, Any], prefetch: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/example",
            "patientId": PATIENT_ID,
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": o} for o in orders],
            },
        },
    }
    if prefetch is not None:
        body["prefetch"] = copy.deepcopy(prefetch)
    body.update(extra)
    return body


def topics(answer: dict[str, Any] | list[dict[str, Any]]) -> list[str]:
    """The ``source.topic.code`` of every card, sorted: of a response body, or of its list of cards."""
    cards = answer["cards"] if isinstance(answer, dict) else answer
    return sorted(card["source"]["topic"]["code"] for card in cards)


def assert_no_empty_fields(value: Any, path: str = "$") -> None:
    """The spec forbids null, "", [] and {} in a response (``cards: []`` is the one exception)."""
    if isinstance(value, dict):
        assert value, f"empty object at {path}"
        for key, child in value.items():
            if path == "$" and key == "cards" and child == []:
                continue
            assert child is not None and child != "", f"empty {key} at {path}"
            assert_no_empty_fields(child, f"{path}.{key}")
    elif isinstance(value, list):
        assert value, f"empty array at {path}"
        for index, child in enumerate(value):
            assert_no_empty_fields(child, f"{path}[{index}]")


# --- rules without Flask or a database: a RuleContext built from FHIR JSON ----------------------------
LOINC = "http://loinc.org"
ORDER_DAY = date(2026, 11, 22)  # authoredOn of amifampridine_order()


@functools.cache
def shipped_knowledge() -> Knowledge:
    """The knowledge base in cards/, loaded once for the whole test session."""
    return load_knowledge(Path(__file__).resolve().parents[2] / "cards")


def rule_context(
    *drafts: dict[str, Any],
    patient_resource: dict[str, Any] | None = None,
    unavailable: dict[str, str] | None = None,
    today: date = ORDER_DAY,
    **prefetch: list[dict[str, Any]],
) -> RuleContext:
    """What a hook call gives the rules: ``drafts`` (all in question), the Patient (default: born
    1970, female) and the resources of each other prefetch key (``conditions=[...]``, ``renal=[...]``)."""
    knowledge = shipped_knowledge()
    values: dict[str, Any] = {"patient": patient_resource or patient()}
    values |= {key: searchset(*resources) for key, resources in prefetch.items()}
    record = build_record(values, knowledge, unavailable=unavailable)
    orders = [classify_order(resource, knowledge, draft=True) for resource in drafts]
    return RuleContext(record=record, orders=orders, drafts=orders, knowledge=knowledge, today=today)


def observation(
    code: str, value: float, unit: str, day: str = "2026-11-01", obs_id: str | None = None
) -> dict[str, Any]:
    """A LOINC-coded quantity Observation (weight, creatinine clearance, serum creatinine, eGFR)."""
    return {
        "resourceType": "Observation",
        "id": obs_id or f"obs-{code}-{day}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": day,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def current_amifampridine(order_id: str = "active-amf", mg: float = 5, per_day: int = 3) -> dict[str, Any]:
    """An active amifampridine order of the patient (a medications prefetch entry)."""
    order = amifampridine_order(order_id, mg=mg, per_day=per_day)
    order["status"] = "active"
    order["authoredOn"] = "2026-09-01"
    return order
