"""Suggestions with concrete fixes: ``update`` a draft amifampridine order to a safer regimen, or
``delete`` a draft co-prescription.

An update carries the whole draft with its dosage replaced by one coded instruction (mg per dose, times
a day), so the EHR receives a complete, valid order: id, status, intent, subject, medication[x] and
dosageInstruction are always present. A draft without an id gets no update: there is nothing the EHR
could match it to, and an invented id would name an order it never issued.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from cds_service.facts import fmt_mg
from cds_service.knowledge.dose_table import Regimen
from cds_service.record import Order
from cds_service.rules.base import Action, RuleContext, Suggestion

UCUM = "http://unitsofmeasure.org"
_TIMES = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times"}


def regimen_words(regimen: Regimen) -> str:
    times = _TIMES.get(regimen.times_per_day, f"{regimen.times_per_day} times")
    return f"{fmt_mg(regimen.mg_per_dose)} mg {times} a day ({fmt_mg(regimen.mg_per_day)} mg/day)"


def capped_regimen(
    mg_per_dose: float, doses_per_day: float, max_single: float, max_daily: float, step: float
) -> Regimen | None:
    """The same number of doses a day, each as large as both caps allow, rounded down to ``step``."""
    times = max(1, round(doses_per_day))
    allowed = min(max_single, max_daily / times, mg_per_dose)
    rounded = math.floor(allowed / step + 1e-9) * step
    if rounded <= 0:
        return None
    return Regimen(rounded, times)


def split_regimen(
    mg_per_day: float, max_single: float, max_daily: float, step: float, max_times: int = 5
) -> Regimen | None:
    """The same daily amount in more, smaller doses (at most ``max_times`` a day), when that fits."""
    if mg_per_day > max_daily:
        return None
    times = math.ceil(mg_per_day / max_single - 1e-9)
    if times > max_times:
        return None
    dose = math.floor(mg_per_day / times / step + 1e-9) * step
    return Regimen(dose, times) if dose > 0 else None


def _dosage(regimen: Regimen, original: Mapping[str, Any] | None, stu3: bool) -> dict[str, Any]:
    dose = {"value": regimen.mg_per_dose, "unit": "mg", "system": UCUM, "code": "mg"}
    dosage: dict[str, Any] = {
        "sequence": 1,
        "text": f"{fmt_mg(regimen.mg_per_dose)} mg by mouth {_TIMES.get(regimen.times_per_day, '')} a day",
        "timing": {"repeat": {"frequency": regimen.times_per_day, "period": 1, "periodUnit": "d"}},
    }
    if original and isinstance(original.get("route"), Mapping):
        dosage["route"] = copy.deepcopy(original["route"])
    if stu3:
        dosage["doseQuantity"] = dose
    else:
        dosage["doseAndRate"] = [{"doseQuantity": dose}]
    return dosage


def updated_order(ctx: RuleContext, order: Order, regimen: Regimen) -> dict[str, Any]:
    """A copy of the draft order with one coded dosage instruction for ``regimen``."""
    # A shallow copy: only top-level elements are replaced or added below, and the draft is never changed.
    resource: dict[str, Any] = dict(order.resource)
    original = (resource.get("dosageInstruction") or [None])[0]
    # STU3 and DSTU2 put doseQuantity on the dosage itself; R4 nests it in doseAndRate.
    stu3 = resource.get("resourceType") == "MedicationOrder" or (
        isinstance(original, Mapping) and "doseQuantity" in original
    )
    resource["dosageInstruction"] = [
        _dosage(regimen, original if isinstance(original, Mapping) else None, stu3)
    ]
    resource.setdefault("resourceType", "MedicationRequest")
    resource.setdefault("status", "draft")
    if resource["resourceType"] == "MedicationRequest":
        resource.setdefault("intent", "order")
        patient_id = (ctx.record.patient or {}).get("id")
        if "subject" not in resource and patient_id:
            resource["subject"] = {"reference": f"Patient/{patient_id}"}
    if "medicationCodeableConcept" not in resource and "medicationReference" not in resource:
        resource["medicationCodeableConcept"] = {"text": order.name}
    return resource


def update_suggestion(ctx: RuleContext, order: Order, regimen: Regimen, label: str) -> Suggestion:
    """The update of ``order`` to ``regimen``; without actions when the draft has no id to update."""
    if not order.resource.get("id"):
        return Suggestion(label=label, actions=(), recommended=True)
    return Suggestion(
        label=label,
        actions=(
            Action(
                type="update",
                description=f"Change {order.name} to {regimen_words(regimen)}",
                resource=updated_order(ctx, order, regimen),
            ),
        ),
        recommended=True,
    )


def delete_suggestion(order: Order, label: str) -> Suggestion:
    return Suggestion(
        label=label,
        actions=(
            Action(
                type="delete",
                description=f"Remove the draft order for {order.name}",
                resource_id=order.reference,
            ),
        ),
    )
