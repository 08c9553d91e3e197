"""Request bodies for the benchmark, built from the team's Synthea patients.

The heavy patient is Mafalda Turcotte's Patient resource with a long record cloned from all three
Synthea patients' own resources (new ids, one subject): about 60 current MedicationRequests, 40
Conditions (one of them epilepsy, SNOMED 84757009) and 300 body-weight and renal-function Observations —
about 260 KB of JSON in prefetch. The amifampridine draft (30 mg once a day) gets three cards:
seizure-history, dose-single-max and seizure-threshold-drug (tramadol among the current orders). The
records are real Synthea shapes; only ids, subject, dates and a few codes are changed so that the
prefetch queries the service advertises would return them.
"""

from __future__ import annotations

import copy
import gzip
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

SYNTHEA_DIR = Path(__file__).resolve().parents[2] / "shared" / "test-data" / "synthea"
HEAVY_PATIENT = "Mafalda_Turcotte_80833fb2-95c1-4f5b-ab5e-26230287ee61.json.gz"
PATIENT_ID = "bench-heavy-patient"
SERVICE_PATH = "/cds-services/amifampridine-order-sign"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"

N_MEDICATIONS = 60
N_CONDITIONS = 40
# Long records: weekly weights and frequent renal panels (a dialysis patient's chart looks like this).
N_WEIGHTS = 200
N_CREATININE = 50
N_EGFR = 50


@dataclass(frozen=True)
class Workloads:
    """Every body the benchmark posts, plus the FHIR resources the delayed server answers from."""

    heavy: bytes  # (a) full prefetch, amifampridine draft that triggers several cards
    fallback: bytes  # (b) same patient, no prefetch, fhirServer set
    unrelated: bytes  # (c) full prefetch, a draft for an unrelated drug
    resources: dict[str, list[dict[str, Any]]]  # resourceType -> resources of the heavy patient


def _synthea_resources(kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(SYNTHEA_DIR.glob("*.json.gz")):
        bundle = orjson.loads(gzip.decompress(path.read_bytes()))
        found.extend(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind)
    if not found:
        raise SystemExit(f"bench: no Synthea {kind} resources in {SYNTHEA_DIR}")
    return found


def _patient() -> dict[str, Any]:
    bundle = orjson.loads(gzip.decompress((SYNTHEA_DIR / HEAVY_PATIENT).read_bytes()))
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    patient = copy.deepcopy(patient)
    patient["id"] = PATIENT_ID
    patient.pop("text", None)  # generated narrative: not what an EHR's prefetch usually carries
    return patient


def _stable_id(kind: str, number: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{kind}/{number}"))


def _rebase(resource: dict[str, Any], kind: str, number: int) -> dict[str, Any]:
    clone = copy.deepcopy(resource)
    clone["id"] = _stable_id(kind, number)
    clone["subject"] = {"reference": f"Patient/{PATIENT_ID}"}
    # urn:uuid references only make sense inside the original transaction Bundle.
    # The Synthea tag in meta is dropped too: it says nothing an EHR would send.
    for field in ("encounter", "requester", "reasonReference", "meta"):
        clone.pop(field, None)
    return clone


def _cycle(kind: str, count: int) -> Iterator[tuple[int, dict[str, Any]]]:
    return enumerate(itertools.islice(itertools.cycle(_synthea_resources(kind)), count))


def _medications() -> list[dict[str, Any]]:
    orders = []
    for number, resource in _cycle("MedicationRequest", N_MEDICATIONS):
        order = _rebase(resource, "MedicationRequest", number)
        order["status"] = "active"  # the medications query asks for active orders only
        orders.append(order)
    # One current drug that lowers the seizure threshold (label §5.1): an interaction card.
    orders[N_MEDICATIONS // 3]["medicationCodeableConcept"] = {
        "text": "tramadol hydrochloride 50 MG Oral Tablet"
    }
    return orders


def _conditions() -> list[dict[str, Any]]:
    conditions = [_rebase(r, "Condition", n) for n, r in _cycle("Condition", N_CONDITIONS)]
    # One history of epilepsy, resolved long ago: the seizure-history contraindication still applies.
    epilepsy = conditions[N_CONDITIONS // 2]
    epilepsy["code"] = {
        "coding": [{"system": SNOMED, "code": "84757009", "display": "Epilepsy"}],
        "text": "Epilepsy",
    }
    epilepsy["clinicalStatus"]["coding"][0]["code"] = "resolved"
    return conditions


def _observation_series(
    template: dict[str, Any], count: int, start: int, code: str, display: str, value: float, unit: str
) -> list[dict[str, Any]]:
    series = []
    for offset in range(count):
        number = start + offset
        obs = _rebase(template, "Observation", number)
        obs["code"] = {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}
        # Weekly, newest first, ending a month ago; values wander a little as real ones do.
        day = 30 + 7 * offset
        year, day_of_year = 2026 - day // 365, 365 - day % 365
        month, mday = min(12, 1 + (day_of_year - 1) // 31), 1 + (day_of_year - 1) % 28
        stamp = f"{year}-{month:02d}-{mday:02d}T09:30:00+00:00"
        obs["effectiveDateTime"] = stamp
        obs["issued"] = stamp
        obs["valueQuantity"] = {
            "value": round(value + ((offset * 7) % 11 - 5) * value / 200, 2),
            "unit": unit,
            "system": UCUM,
            "code": unit,
        }
        series.append(obs)
    return series


def _observations() -> list[dict[str, Any]]:
    vitals = [r for r in _synthea_resources("Observation") if r["code"]["coding"][0]["code"] == "29463-7"]
    labs = [r for r in _synthea_resources("Observation") if r["code"]["coding"][0]["code"] == "38483-4"]
    weights = _observation_series(vitals[0], N_WEIGHTS, 0, "29463-7", "Body Weight", 72.0, "kg")
    creatinine = _observation_series(
        labs[0],
        N_CREATININE,
        N_WEIGHTS,
        "2160-0",
        "Creatinine [Mass/volume] in Serum or Plasma",
        0.7,
        "mg/dL",
    )
    egfr = _observation_series(
        labs[0],
        N_EGFR,
        N_WEIGHTS + N_CREATININE,
        "33914-3",
        "Glomerular filtration rate/1.73 sq M.predicted",
        95.0,
        "mL/min/{1.73_m2}",
    )
    return weights + creatinine + egfr


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }


def amifampridine_draft() -> dict[str, Any]:
    """30 mg once a day: a usual first daily dose, but above the 20 mg single-dose cap (label §2.1)."""
    return {
        "resourceType": "MedicationRequest",
        "id": "bench-draft-amifampridine",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": "2026-11-22",
        "medicationCodeableConcept": {
            # Matched by name: the team has not confirmed amifampridine RxNorm codes (see its ValueSet).
            "text": "Firdapse (amifampridine) 10 MG Oral Tablet",
        },
        "dosageInstruction": [
            {
                "text": "30 mg by mouth once a day",
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 30, "unit": "mg", "system": UCUM, "code": "mg"}}],
            }
        ],
    }


def unrelated_draft() -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": "bench-draft-lisinopril",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "authoredOn": "2026-11-22",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": "314076", "display": "lisinopril 10 MG Oral Tablet"}],
            "text": "lisinopril 10 MG Oral Tablet",
        },
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg", "system": UCUM, "code": "mg"}}],
            }
        ],
    }


def prefetch(resources: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """What an EHR sends for the service's templates (discovery's prefetch keys)."""
    observations = resources["Observation"]

    def coded(*codes: str) -> list[dict[str, Any]]:
        return [o for o in observations if o["code"]["coding"][0]["code"] in codes]

    return {
        "patient": resources["Patient"][0],
        "medications": searchset(resources["MedicationRequest"]),
        "conditions": searchset(resources["Condition"]),
        "allergies": searchset(resources["AllergyIntolerance"]),
        "weight": searchset(coded("29463-7")),
        "renal": searchset(coded("2160-0", "33914-3")),
        "nat2": searchset([]),
    }


def order_sign(
    draft: dict[str, Any], *, prefetch: dict[str, Any] | None, fhir_server: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{draft['id']}/{fhir_server}")),
        "context": {
            "userId": "Practitioner/bench-prescriber",
            "patientId": PATIENT_ID,
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]},
        },
    }
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def heavy_resources() -> dict[str, list[dict[str, Any]]]:
    return {
        "Patient": [_patient()],
        "MedicationRequest": _medications(),
        "Condition": _conditions(),
        "AllergyIntolerance": [],
        "Observation": _observations(),
    }


def build(fhir_server: str) -> Workloads:
    resources = heavy_resources()
    full = prefetch(resources)
    return Workloads(
        heavy=orjson.dumps(order_sign(amifampridine_draft(), prefetch=full, fhir_server=None)),
        fallback=orjson.dumps(order_sign(amifampridine_draft(), prefetch=None, fhir_server=fhir_server)),
        unrelated=orjson.dumps(order_sign(unrelated_draft(), prefetch=full, fhir_server=None)),
        resources=resources,
    )


def counts(resources: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    return {kind: len(items) for kind, items in resources.items()}
