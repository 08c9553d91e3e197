"""Renal status on the order date (label §2.2, §8.6): the measure, its value and date, and the level.

Creatinine clearance comes from the newest usable renal result: a measured clearance (LOINC 2164-2,
in mL/min, mL/s or mL/min/1.73 m2), Cockcroft-Gault on a serum creatinine (2160-0) with age, weight
and sex, or an eGFR named as a stand-in (the label speaks of CLcr, not eGFR). Among results of the same
day that order is the preference; an older result never outranks a newer one. Kidney conditions count
too. CLcr 15-90 mL/min or a kidney condition: impaired. CLcr below 15, ESRD or dialysis: end stage.

A result is not judged on in two cases, and the status says why (``unused``) so the rule can say so:
- it is older than ``CDS_RENAL_MAX_AGE_DAYS`` before the order (OLD): renal function is unknown;
- it is a bound ("<", "<=", ">", ">=" as ``valueQuantity.comparator`` or in a ``valueString`` such as
  ">60") that does not decide the level (UNDECIDED): ">90" is normal, "<15" end-stage, "<30" impaired,
  but ">60" leaves mild impairment (60-90) open.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from cds_service.dose.units import unit_words
from cds_service.facts.format import fmt_mg
from cds_service.record import concept_text, current_condition, effective_date

if TYPE_CHECKING:
    from cds_service.facts import Facts

TOPIC = "renal-impairment"  # what the notes are filed under (--explain shows them with that rule)
LOINC = "http://loinc.org"
CLEARANCE = "2164-2"
# Creatinine in serum/plasma (2160-0) or in blood (38483-4, what Synthea and some labs send): the same
# measurement for Cockcroft-Gault.
SERUM_CREATININE = frozenset({"2160-0", "38483-4"})
_UMOL_PER_MG_DL = 88.4
MEASURED, COCKCROFT_GAULT, EGFR = "measured clearance", "Cockcroft-Gault", "eGFR"
ESRD = "esrd"
IMPAIRED = "impaired"
NORMAL = "normal"
OLD, UNDECIDED = "old", "undecided"  # why the newest result was not judged on
EGFR_UNIT = "mL/min/1.73 m²"
_COMPARATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "≤": "<=", "≥": ">="}
# A value written as text: ">90", "> 60 mL/min/1.73m2", "<15", "45".
_VALUE_STRING = re.compile(r"\s*(<=|>=|<|>|≤|≥)?\s*(\d+(?:\.\d+)?)\s*(\S.*)?\s*$")


@dataclass(frozen=True)
class RenalStatus:
    level: str | None  # esrd | impaired | normal | None (nothing to judge on)
    crcl: float | None  # mL/min (or mL/min/1.73 m2 when an eGFR stands in)
    how: str  # how the figure was obtained, in words, with dates
    conditions: tuple[str, ...]
    end_stage_conditions: tuple[str, ...]
    measure: str | None = None  # MEASURED | COCKCROFT_GAULT | EGFR: what the figure comes from
    on: date | None = None  # the day of the result the figure comes from
    comparator: str | None = None  # "<", "<=", ">", ">=": the figure is a bound, not a value
    unused: str | None = None  # OLD | UNDECIDED: the newest result was not judged on (level from conditions)
    age_days: int | None = None  # how many days before the order the result was taken

    @property
    def unit(self) -> str:
        return EGFR_UNIT if self.measure == EGFR else "mL/min"

    @property
    def figure(self) -> str | None:
        """The result as a card shows it: "45", ">90", "<15" (in ``unit``)."""
        if self.crcl is None:
            return None
        return f"{self.comparator or ''}{self.crcl:.0f}"


@dataclass(frozen=True)
class _Reading:
    value: float
    unit: str  # as recorded (code, else unit), "" when none
    comparator: str | None


def _value(observation: Mapping[str, Any]) -> _Reading | None:
    """The value of a result: a valueQuantity (with its comparator) or a valueString such as ">90"."""
    quantity = observation.get("valueQuantity")
    if isinstance(quantity, Mapping):
        value = quantity.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            return None
        comparator = quantity.get("comparator")
        unit = str(quantity.get("code") or quantity.get("unit") or "").strip()
        return _Reading(
            float(value), unit, _COMPARATORS.get(comparator) if isinstance(comparator, str) else None
        )
    text = observation.get("valueString")
    if isinstance(text, str) and len(text) <= 60:
        match = _VALUE_STRING.fullmatch(text)
        if match and float(match.group(2)) > 0:
            comparator = _COMPARATORS.get(match.group(1) or "")
            return _Reading(float(match.group(2)), (match.group(3) or "").strip(), comparator)
    return None


def _is(observation: Mapping[str, Any], code: str | frozenset[str]) -> bool:
    codes = {code} if isinstance(code, str) else code
    return any(
        c.get("system") == LOINC and c.get("code") in codes
        for c in (observation.get("code") or {}).get("coding") or []
    )


def _when(observation: Mapping[str, Any]) -> str:
    day = effective_date(observation)
    return f"on {day.isoformat()}" if day else "date not recorded"


def _creatinine_mg_dl(value: float, unit: str) -> float | None:
    unit = unit.lower().replace("µ", "u").replace("μ", "u")
    if unit in {"mg/dl", "mg/100ml"}:
        return value
    if unit in {"umol/l", "umol/liter"}:
        return value / _UMOL_PER_MG_DL
    return None


def _cockcroft_gault(facts: Facts, observation: Mapping[str, Any], on: Any) -> tuple[_Reading, str] | None:
    reading = _value(observation)
    if reading is None:
        return None
    if reading.comparator:
        note = f"serum creatinine {reading.comparator}{fmt_mg(reading.value)} is a bound: no Cockcroft-Gault"
        if (TOPIC, note) not in facts.notes:
            facts.note(TOPIC, note)
        return None
    scr = _creatinine_mg_dl(reading.value, reading.unit)
    age = facts.record.age_on(on)
    weight = facts.weight
    if scr is None or age is None or weight is None or age < 18:
        note = (
            "serum creatinine present, but Cockcroft-Gault needs an adult's age and weight "
            "and a mg/dL or umol/L unit"
        )
        if (TOPIC, note) not in facts.notes:  # several creatinines may be tried: say it once
            facts.note(TOPIC, note)
        return None
    sex = facts.record.gender()
    crcl = (140 - age) * weight.kg / (72 * scr)
    if sex != "male":
        # Female, or sex not recorded: the 0.85 factor gives the lower (safer) estimate.
        crcl *= 0.85
    sex_words = sex if sex in {"male", "female"} else "sex not recorded, female factor used"
    how = (
        f"estimated by Cockcroft-Gault: (140 − {age} years) × {weight.describe()} "
        f"/ (72 × serum creatinine {scr:.2f} mg/dL {_when(observation)})"
        f"{' × 0.85' if sex != 'male' else ''} ({sex_words})"
    )
    return _Reading(crcl, "mL/min", None), how


def _clearance_unit(text: str) -> str:
    """A clearance unit as a lookup key: "mL/min/{1.73_m2}" and "ml/min/1.73 m²" both give "ml/min/1.73m2"."""
    key = text.strip().lower().replace("²", "2")
    for drop in (" ", "{", "}", "_", "^"):
        key = key.replace(drop, "")
    return key


# Measured clearance units read as mL/min: the factor, and whether the figure is per 1.73 m2.
_CLEARANCE_UNITS = {"ml/min": (1.0, False), "ml/s": (60.0, False), "ml/min/1.73m2": (1.0, True)}


def _clearance(facts: Facts, observation: Mapping[str, Any]) -> tuple[_Reading, str] | None:
    """A measured creatinine clearance in mL/min with how it was obtained, or None when it has no
    value or a unit that cannot be read as mL/min (then a note says why)."""
    reading = _value(observation)
    if reading is None:
        return None
    value = reading.value
    recorded = [reading.unit] if reading.unit else []
    quantity = observation.get("valueQuantity")
    if isinstance(quantity, Mapping):
        recorded = [str(quantity.get(key) or "").strip() for key in ("code", "unit")]
        recorded = [text for text in recorded if text]
    known = next((text for text in recorded if _clearance_unit(text) in _CLEARANCE_UNITS), None)
    how = f"measured creatinine clearance (LOINC {CLEARANCE}) {_when(observation)}"
    if known is None:
        unit = f"unit {recorded[0]!r}" if recorded else "no unit"
        facts.note(
            TOPIC,
            f"{how} not used: {unit}, and only mL/min, mL/s or mL/min/1.73m2 can be read as mL/min",
        )
        return None
    factor, per_area = _CLEARANCE_UNITS[_clearance_unit(known)]
    shown = f"{reading.comparator or ''}{fmt_mg(value)} {unit_words(known)}"
    if factor != 1.0:
        how += f" (recorded as {shown})"
    elif per_area:
        how += f" (recorded as {shown}, per 1.73 m² body surface, read as mL/min)"
    return _Reading(value * factor, "mL/min", reading.comparator), how


@dataclass(frozen=True)
class _Result:
    reading: _Reading  # in mL/min (mL/min/1.73 m² for an eGFR)
    how: str
    measure: str
    day: date | None


def _measured(facts: Facts, on: Any) -> _Result | None:
    """The newest usable renal result; on the same day a measured clearance comes first, then
    Cockcroft-Gault from serum creatinine, then an eGFR."""
    matcher = facts.knowledge.valueset("renal-function-observations")
    by_day: dict[date | None, list[Mapping[str, Any]]] = {}
    for observation in facts.record.observations_in(matcher):  # newest first, undated last
        by_day.setdefault(effective_date(observation), []).append(observation)
    for day, same_day in by_day.items():
        for observation in same_day:
            if _is(observation, CLEARANCE) and (measured := _clearance(facts, observation)):
                return _Result(*measured, MEASURED, day)
        for observation in same_day:
            if _is(observation, SERUM_CREATININE) and (estimate := _cockcroft_gault(facts, observation, on)):
                return _Result(*estimate, COCKCROFT_GAULT, day)
        for observation in same_day:
            if not (_is(observation, CLEARANCE) or _is(observation, SERUM_CREATININE)) and (
                reading := _value(observation)
            ):
                name = concept_text(observation)
                unit = unit_words(reading.unit) if reading.unit else EGFR_UNIT
                how = (
                    f"eGFR used as a stand-in for creatinine clearance: {name} "
                    f"{reading.comparator or ''}{fmt_mg(reading.value)} {unit} {_when(observation)} "
                    "(the label's thresholds are for Cockcroft-Gault creatinine clearance)"
                )
                return _Result(reading, how, EGFR, day)
    return None


def _level_of_bound(
    comparator: str, value: float, end_stage_below: float, impaired_up_to: float
) -> str | None:
    """The level a bound decides, or None when values on both sides of a threshold remain possible."""
    if comparator in {">", ">="}:
        above = value >= impaired_up_to if comparator == ">" else value > impaired_up_to
        return NORMAL if above else None
    if (comparator == "<" and value <= end_stage_below) or (comparator == "<=" and value < end_stage_below):
        return ESRD
    if value <= impaired_up_to:
        return IMPAIRED  # every value below the bound is 90 mL/min or less (end stage not ruled out)
    return None


def renal_status(facts: Facts, on: date) -> RenalStatus:
    """The renal status for an order written ``on`` (Cockcroft-Gault uses the age on that day)."""
    limits = facts.table
    kidney = facts.knowledge.valueset("kidney-conditions")
    end_stage = facts.knowledge.valueset("end-stage-renal-disease")
    end_stage_coded = {id(c) for c in facts.record.conditions_in(end_stage)}
    kidney_coded = {id(c) for c in facts.record.conditions_in(kidney)} | end_stage_coded
    kidney_conditions = facts.record.cited(
        c for c in facts.record.conditions if id(c) in kidney_coded and current_condition(c)
    )
    esrd_conditions = [c for c in kidney_conditions if id(c) in end_stage_coded]
    result = _measured(facts, on) if "renal" not in facts.record.unavailable else None
    crcl = result.reading.value if result else None
    comparator = result.reading.comparator if result else None
    age_days = (on - result.day).days if result and result.day else None
    # The level the result alone gives, or why it gives none.
    by_result: str | None = None
    unused: str | None = None
    if result is None:
        pass
    elif age_days is not None and age_days > facts.options.renal_max_age_days:
        unused = OLD
        facts.note(
            TOPIC, f"newest renal result is {age_days} days old: not judged on, renal function unknown"
        )
    elif comparator:
        by_result = _level_of_bound(
            comparator, result.reading.value, limits.renal_end_stage_below, limits.renal_impaired_up_to
        )
        if by_result is None:
            unused = UNDECIDED
            facts.note(
                TOPIC, f"renal result {comparator}{fmt_mg(result.reading.value)} does not decide the level"
            )
    elif crcl is not None and crcl < limits.renal_end_stage_below:
        by_result = ESRD
    elif crcl is not None and crcl <= limits.renal_impaired_up_to:
        by_result = IMPAIRED
    elif crcl is not None:
        by_result = NORMAL
    if esrd_conditions or by_result == ESRD:
        level: str | None = ESRD
    elif kidney_conditions or by_result == IMPAIRED:
        level = IMPAIRED
    else:
        level = by_result
    return RenalStatus(
        level=level,
        crcl=crcl,
        how=result.how if result else "no creatinine clearance, serum creatinine or eGFR on record",
        conditions=tuple(concept_text(c) for c in kidney_conditions),
        end_stage_conditions=tuple(concept_text(c) for c in esrd_conditions),
        measure=result.measure if result else None,
        on=result.day if result else None,
        comparator=comparator,
        unused=unused,
        age_days=age_days,
    )
