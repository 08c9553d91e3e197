"""FHIR R4 models (``fhir.resources`` R4B, which reads R4 data for these resources), imported on demand.

Only the resource types a rule cites are validated; importing a model costs tens of milliseconds, so
each is loaded the first time it is needed and kept.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

_MODULES = {
    "Patient": "patient",
    "Condition": "condition",
    "AllergyIntolerance": "allergyintolerance",
    "Observation": "observation",
    "MedicationRequest": "medicationrequest",
    "Medication": "medication",
}


@cache
def model_for(resource_type: str) -> Any | None:
    """The R4B model class for ``resource_type``, or None for types this service does not validate."""
    module_name = _MODULES.get(resource_type)
    if module_name is None:
        return None
    module = importlib.import_module(f"fhir.resources.R4B.{module_name}")
    return getattr(module, resource_type)


def preload() -> None:
    """Import every model at start-up so the first hook call does not pay for it."""
    for resource_type in _MODULES:
        model_for(resource_type)
