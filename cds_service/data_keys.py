"""The kinds of patient data the service reads, by prefetch key, in plain words for cards and errors."""

from __future__ import annotations

from collections.abc import Mapping

PREFETCH_KEYS: Mapping[str, str] = {
    "patient": "the patient's demographics (age, sex)",
    "medications": "the patient's current medication orders",
    "conditions": "the patient's conditions",
    "allergies": "the patient's allergies and intolerances",
    "weight": "body weight observations",
    "renal": "renal function results (creatinine clearance, eGFR, serum creatinine)",
    "nat2": "NAT2 pharmacogenomic results",
}

# Not a prefetch template (CDS Hooks 2.0's recommended query subset has no _include): the Medications that
# medication orders reference by id, fetched from fhirServer in one query after the keys above.
MEDICATION_REFERENCES = "medicationReferences"
