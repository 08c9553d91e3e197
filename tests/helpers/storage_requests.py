"""CDS Hooks request bodies for the storage tests: an order-sign call that yields one card, and feedback."""

from __future__ import annotations

import uuid
from typing import Any

SERVICE = "amifampridine-order-sign"
SEIZURE_TOPIC = "seizure-history"


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def order_sign_with_seizure_history(
    patient_id: str = "storage-test-patient", order_id: str | None = None
) -> dict[str, Any]:
    """A draft amifampridine order for a patient with epilepsy: the service answers a seizure-history card.

    Each call is a new order (a new draft id) unless ``order_id`` is given: the report counts a card once
    per order, so two calls for one order are one card shown."""
    order = {
        "resourceType": "MedicationRequest",
        "id": order_id or f"draft-amifampridine-{uuid.uuid4().hex[:8]}",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.whocc.no/atc", "code": "N07XX05", "display": "amifampridine"}],
            "text": "Firdapse 10 mg tablet",
        },
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": 5,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
    }
    epilepsy = {
        "resourceType": "Condition",
        "id": "epilepsy",
        "subject": {"reference": f"Patient/{patient_id}"},
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "84757009", "display": "Epilepsy"}]},
    }
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/storage-test",
            "patientId": patient_id,
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]},
        },
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "id": patient_id,
                "birthDate": "1970-01-01",
                "gender": "female",
            },
            "conditions": _bundle(epilepsy),
            "medications": _bundle(),
            "allergies": _bundle(),
            "weight": _bundle(),
            "renal": _bundle(),
            "nat2": _bundle(),
        },
    }


def seizure_card(response_cards: list[dict[str, Any]]) -> dict[str, Any]:
    """The seizure-history card among the cards of one response (other rules may add more cards)."""
    [card] = [c for c in response_cards if c["source"]["topic"]["code"] == SEIZURE_TOPIC]
    return card


def accepted(card: str, suggestions: tuple[str, ...] = ("suggestion-1",), when: str | None = None) -> dict:
    return {
        "card": card,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": s} for s in suggestions],
        "outcomeTimestamp": when or "2025-03-01T10:00:00Z",
    }


def overridden(
    card: str, code: str | None = None, comment: str | None = None, when: str | None = None
) -> dict:
    entry: dict[str, Any] = {
        "card": card,
        "outcome": "overridden",
        "outcomeTimestamp": when or "2025-03-01T10:00:00Z",
    }
    reason: dict[str, Any] = {}
    if code:
        reason["reason"] = {
            "system": "https://amifampridine-cds.github.io/fhir/CodeSystem/override-reason",
            "code": code,
            "display": f"display of {code}",
        }
    if comment:
        reason["userComment"] = comment
    if reason:
        entry["overrideReason"] = reason
    return entry
