"""Helpers for tests of the knowledge base: site directories and damaged copies of cards/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CARDS = ROOT / "cards"
EXAMPLE_SITE = ROOT / "docs" / "examples" / "site-knowledge"
# Example local code systems: a hospital's own formulary and problem list (example.org, not real codes).
LOCAL_FORMULARY = "https://hospital.example.org/fhir/CodeSystem/formulary"
LOCAL_PROBLEMS = "https://hospital.example.org/fhir/CodeSystem/problem-list"


def site_valueset(system: str, *codes: str, **extra: Any) -> dict[str, Any]:
    """A site ValueSet adding ``codes`` of ``system`` (no display: matched by code alone)."""
    resource: dict[str, Any] = {
        "resourceType": "ValueSet",
        "url": "https://hospital.example.org/fhir/ValueSet/local",
        "status": "active",
        "compose": {"include": [{"system": system, "concept": [{"code": code} for code in codes]}]},
    }
    resource.update(extra)
    return resource


def write_site(
    directory: Path, valuesets: dict[str, Any] | None = None, site_yaml: str | None = None
) -> Path:
    """A site knowledge directory: ``valuesets/<name>.valueset.json`` per entry, and ``site.yaml``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, resource in (valuesets or {}).items():
        path = directory / "valuesets" / f"{name}.valueset.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(resource if isinstance(resource, str) else json.dumps(resource), encoding="utf-8")
    if site_yaml is not None:
        (directory / "site.yaml").write_text(site_yaml, encoding="utf-8")
    return directory


def cards_copy(directory: Path) -> Path:
    """A private copy of the shipped cards/ to damage."""
    return Path(shutil.copytree(CARDS, directory / "cards"))


def firdapse_by_local_code(order_id: str = "draft-local") -> dict[str, Any]:
    """An amifampridine order coded only by a local formulary code: no text, no display."""
    return {
        "resourceType": "MedicationRequest",
        "id": order_id,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/amf-test-patient"},
        "authoredOn": "2026-11-22",
        "medicationCodeableConcept": {"coding": [{"system": LOCAL_FORMULARY, "code": "FIRD-10"}]},
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": 10,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
    }


def local_epilepsy(condition_id: str = "cond-local") -> dict[str, Any]:
    """A problem-list entry for epilepsy coded only by the site's own code."""
    return {
        "resourceType": "Condition",
        "id": condition_id,
        "subject": {"reference": "Patient/amf-test-patient"},
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [{"system": LOCAL_PROBLEMS, "code": "PL-0345"}]},
    }
