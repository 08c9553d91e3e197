"""Suggestions with concrete fixes: ``update`` a draft amifampridine order to a safer regimen, or
``delete`` a draft co-prescription.

The regimen of an update satisfies every dose limit that applies at once (``coherent_regimen``): the
caller passes the lowest of them. The update keeps the order's own dose unit when the new dose can be
written in it (2 tablets, not 20 mg, for an order in 10 mg tablets) and changes only what it must: the
dose amount, the timing only when the number of doses a day changes, and the texts that state the old
dose. An update carries the whole draft, so the EHR receives a complete, valid order: id, status, intent,
subject, medication[x] and dosageInstruction are always present. A draft without an id gets no update:
there is nothing the EHR could match it to, and an invented id would name an order it never issued.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cds_service.dose import DoseResult
from cds_service.dose.text import read_texts
from cds_service.dose.units import classify
from cds_service.facts import fmt_mg
from cds_service.knowledge.dose_table import Regimen
from cds_service.record import Order
from cds_service.rules.base import Action, RuleContext, Suggestion

UCUM = "http://unitsofmeasure.org"
_TIMES = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times"}
_EPSILON = 1e-9
# Doses a day the label divides the daily amount into (Table 1: 3 to 5), tried after the order's own.
_DIVIDED = (3, 4, 5)
# The smallest amount of a counted unit that can be given: half a scored tablet, a whole capsule, 0.5 mL.
_UNIT_STEP = {"tablet": 0.5, "capsule": 1.0, "volume": 0.5}
# Texts that state the old dose or its limits: left out of an update (they would contradict the new dose).
_STALE_DOSAGE_KEYS = ("text", "patientInstruction", "maxDosePerPeriod", "maxDosePerAdministration")


def times_words(times: int) -> str:
    return _TIMES.get(times, f"{times} times")


def regimen_words(regimen: Regimen, unit: OrderUnit | None = None) -> str:
    daily = f"({fmt_mg(regimen.mg_per_day)} mg/day)"
    times = times_words(regimen.times_per_day)
    amount = unit.amount_words(regimen.mg_per_dose) if unit else None
    if amount:
        return f"{amount} ({fmt_mg(regimen.mg_per_dose)} mg) {times} a day {daily}"
    return f"{fmt_mg(regimen.mg_per_dose)} mg {times} a day {daily}"


@dataclass(frozen=True)
class OrderUnit:
    """The unit the order counts its dose in (tablets, capsules, mL) and how many mg one unit holds."""

    kind: str  # tablet | capsule | volume
    quantity: Mapping[str, Any]  # the order's own doseQuantity without its value (unit, system, code)
    mg_each: float
    name: str  # tablet | capsule | mL

    @property
    def grid_mg(self) -> float:
        return _UNIT_STEP[self.kind] * self.mg_each

    def amount(self, mg: float) -> float | None:
        """``mg`` in this unit, when it is a whole number of the smallest step; else None."""
        steps = mg / self.grid_mg
        if abs(steps - round(steps)) > 1e-6 or round(steps) <= 0:
            return None
        return round(steps) * _UNIT_STEP[self.kind]

    def amount_words(self, mg: float) -> str | None:
        value = self.amount(mg)
        if value is None:
            return None
        name = self.name if value <= 1 or self.kind == "volume" else f"{self.name}s"
        return f"{fmt_mg(value)} {name}"


def _dose_quantity(dosage: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The coded dose of one dosage line: R4 doseAndRate[0].doseQuantity, else STU3/DSTU2 doseQuantity."""
    entries = dosage.get("doseAndRate")
    if isinstance(entries, list) and entries and isinstance(entries[0], Mapping):
        quantity = entries[0].get("doseQuantity")
        return quantity if isinstance(quantity, Mapping) else None
    quantity = dosage.get("doseQuantity")
    return quantity if isinstance(quantity, Mapping) else None


def order_unit(resource: Mapping[str, Any], dose: DoseResult) -> OrderUnit | None:
    """The order's own counted unit, for an order of one dosage line whose dose is a count of tablets or
    capsules or a volume (coded, or a count of tablets in its text); None for mg or anything else."""
    lines = resource.get("dosageInstruction")
    if not (isinstance(lines, list) and len(lines) == 1 and isinstance(lines[0], Mapping)):
        return None
    if not dose.ok or not dose.mg_per_dose:
        return None
    dosage = lines[0]
    quantity = _dose_quantity(dosage)
    value: Any = None
    if quantity is not None:
        unit = classify(quantity)
        value = quantity.get("value")
        own = {k: v for k, v in quantity.items() if k != "value"}
    elif isinstance(dosage.get("text"), str):
        reading = read_texts([dosage["text"]])
        if len(reading.doses) != 1 or reading.doses[0].unit.kind != "tablet":
            return None
        unit, value = reading.doses[0].unit, reading.doses[0].amount
        own = {"unit": "tablet", "system": UCUM, "code": "{tbl}"}
    else:
        return None
    if unit is None or unit.kind not in _UNIT_STEP:
        return None
    try:
        count = float(value) * (float(unit.factor) if unit.kind == "volume" else 1.0)
    except (TypeError, ValueError):
        return None
    if not count > 0:
        return None
    name = "mL" if unit.kind == "volume" else unit.kind
    if unit.kind == "volume":
        own = {"unit": "mL", "system": UCUM, "code": "mL"}  # a volume is rewritten in mL
    return OrderUnit(unit.kind, own, dose.mg_per_dose / count, name)


def coherent_regimen(
    dose: DoseResult,
    *,
    max_single: float,
    max_daily: float,
    grids: Sequence[Sequence[float]],
    fallbacks: Sequence[Regimen] = (),
) -> Regimen | None:
    """The regimen closest to the order that keeps every dose under ``max_single`` and the day under
    ``max_daily`` (the lowest daily limit of every rule that applies).

    The most mg a day that fits, no more than the order asks for; among equals the order's own number of
    doses a day, then fewer doses. Doses are whole multiples of a step of the first tier of ``grids`` in
    which any fits (the order's unit first in a tier: it wins a tie; a finer tier, such as 1 mg of the
    suspension, only when nothing coarser fits); ``fallbacks`` (the table's regimens) when none does."""
    wanted = dose.mg_per_day if dose.ok and dose.mg_per_day else max_daily
    target = min(wanted, max_daily)
    own = round(dose.doses_per_day) if dose.ok and dose.doses_per_day else None
    own_times = own if own and abs((dose.doses_per_day or 0) - own) < _EPSILON else None
    times_options = list(dict.fromkeys([t for t in (own_times, *_DIVIDED) if t]))
    for tier in grids:
        best: tuple[tuple[float, int, bool, int], Regimen] | None = None
        for grid_rank, grid in enumerate(tier):
            for times in times_options:
                each = math.floor(min(max_single, target / times) / grid + _EPSILON) * grid
                if each <= 0:
                    continue
                regimen = Regimen(round(each, 6), times)
                key = (round(regimen.mg_per_day, 6), -grid_rank, times == own_times, -times)
                if best is None or key > best[0]:
                    best = (key, regimen)
        if best is not None:
            return best[1]
    for regimen in fallbacks:
        if regimen.mg_per_dose <= max_single + _EPSILON and regimen.mg_per_day <= max_daily + _EPSILON:
            return regimen
    return None


def _number(value: float) -> int | float:
    """A whole number as an integer (2, not 2.0), as a sender would write it."""
    return int(value) if float(value).is_integer() else value


def _new_dosage(
    regimen: Regimen,
    original: Mapping[str, Any] | None,
    unit: OrderUnit | None,
    stu3: bool,
    keep_timing: bool,
) -> dict[str, Any]:
    amount = unit.amount(regimen.mg_per_dose) if unit else None
    if unit is not None and amount is not None:
        quantity: dict[str, Any] = {**unit.quantity, "value": _number(amount)}
        words = f"{unit.amount_words(regimen.mg_per_dose)} ({fmt_mg(regimen.mg_per_dose)} mg)"
    else:
        quantity = {"value": _number(regimen.mg_per_dose), "unit": "mg", "system": UCUM, "code": "mg"}
        words = f"{fmt_mg(regimen.mg_per_dose)} mg"
    times = times_words(regimen.times_per_day)
    # Changes only what it must: the line's other elements (route, sequence, as-needed, method...) stay.
    dosage = {k: v for k, v in (original or {}).items() if k not in _STALE_DOSAGE_KEYS}
    dosage.setdefault("sequence", 1)
    dosage["text"] = f"{words} by mouth {times} a day"
    if not keep_timing:
        dosage["timing"] = {"repeat": {"frequency": regimen.times_per_day, "period": 1, "periodUnit": "d"}}
    if stu3:
        dosage.pop("doseRange", None)
        dosage["doseQuantity"] = quantity
    else:
        entries = dosage.get("doseAndRate")
        first = entries[0] if isinstance(entries, list) and entries else {}
        # The dose type (ordered, calculated) stays; a rate or range of the old dose goes.
        typed = isinstance(first, Mapping) and "type" in first
        kept = {"type": copy.deepcopy(first["type"])} if typed else {}
        dosage["doseAndRate"] = [{**kept, "doseQuantity": quantity}]
    return dosage


def updated_order(
    ctx: RuleContext, order: Order, regimen: Regimen, dose: DoseResult | None = None
) -> dict[str, Any]:
    """A copy of the draft order whose dosage asks for ``regimen`` (in the order's own unit when it can)."""
    # A shallow copy: only top-level elements are replaced or added below, and the draft is never changed.
    resource: dict[str, Any] = dict(order.resource)
    lines = resource.get("dosageInstruction")
    single = isinstance(lines, list) and len(lines) == 1 and isinstance(lines[0], Mapping)
    original: Mapping[str, Any] | None = lines[0] if single else None  # type: ignore[index]
    unit = order_unit(resource, dose) if dose is not None else None
    # STU3 and DSTU2 put doseQuantity on the dosage itself; R4 nests it in doseAndRate.
    stu3 = resource.get("resourceType") == "MedicationOrder" or (
        original is not None and "doseQuantity" in original
    )
    same_times = (
        dose is not None
        and dose.ok
        and dose.source == "coded"
        and dose.doses_per_day is not None
        and abs(dose.doses_per_day - regimen.times_per_day) < _EPSILON
        and original is not None
        and "timing" in original
    )
    resource["dosageInstruction"] = [
        _new_dosage(regimen, copy.deepcopy(dict(original)) if original else None, unit, stu3, same_times)
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


def update_suggestion(
    ctx: RuleContext, order: Order, regimen: Regimen, label: str, dose: DoseResult | None = None
) -> Suggestion:
    """The update of ``order`` to ``regimen``; without actions when the draft has no id to update."""
    if not order.resource.get("id"):
        return Suggestion(label=label, actions=(), recommended=True)
    unit = order_unit(order.resource, dose) if dose is not None else None
    return Suggestion(
        label=label,
        actions=(
            Action(
                type="update",
                description=f"Change {order.name} to {regimen_words(regimen, unit)}",
                resource=updated_order(ctx, order, regimen, dose),
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
