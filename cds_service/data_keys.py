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
