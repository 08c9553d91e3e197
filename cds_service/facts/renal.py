"""Renal status on the order date (label §2.2, §8.6): the measure, its value and date, and the level.

Creatinine clearance comes from the newest usable renal result: a measured clearance (LOINC 2164-2,
in mL/min, mL/s or mL/min/1.73 m2), Cockcroft-Gault on a serum creatinine (2160-0) with age, weight
and sex, or an eGFR named as a stand-in (the label speaks of CLcr, not eGFR). Among results of the same
day that order is the preference; an older result never outranks a newer one. Kidney conditions count
too. CLcr 15-90 mL/min or a kidney condition: impaired. CLcr below 15, ESRD or dialysis: end stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class RenalStatus:
    level: str | None  # esrd | impaired | normal | None (nothing to judge on)
    crcl: float | None  # mL/min (or mL/min/1.73 m2 when an eGFR stands in)
    how: str  # how the figure was obtained, in words, with dates
    conditions: tuple[str, ...]
    end_stage_conditions: tuple[str, ...]
    measure: str | None = None  # MEASURED | COCKCROFT_GAULT | EGFR: what the figure comes from
    on: date | None = None  # the day of the result the figure comes from


def _value(observation: Mapping[str, Any]) -> tuple[float, str] | None:
    quantity = observation.get("valueQuantity")
    if not isinstance(quantity, Mapping):
        return None
    value = quantity.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value), str(quantity.get("code") or quantity.get("unit") or "").strip()


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


def _cockcroft_gault(facts: Facts, observation: Mapping[str, Any], on: Any) -> tuple[float, str] | None:
    reading = _value(observation)
    if reading is None:
        return None
    scr = _creatinine_mg_dl(*reading)
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
    return crcl, how


def _clearance_unit(text: str) -> str:
    """A clearance unit as a lookup key: "mL/min/{1.73_m2}" and "ml/min/1.73 m²" both give "ml/min/1.73m2"."""
    key = text.strip().lower().replace("²", "2")
    for drop in (" ", "{", "}", "_", "^"):
        key = key.replace(drop, "")
    return key


# Measured clearance units read as mL/min: the factor, and whether the figure is per 1.73 m2.
_CLEARANCE_UNITS = {"ml/min": (1.0, False), "ml/s": (60.0, False), "ml/min/1.73m2": (1.0, True)}


def _clearance(facts: Facts, observation: Mapping[str, Any]) -> tuple[float, str] | None:
    """A measured creatinine clearance in mL/min with how it was obtained, or None when it has no
    value or a unit that cannot be read as mL/min (then a note says why)."""
    reading = _value(observation)
    if reading is None:
        return None
    value = reading[0]
    quantity = observation["valueQuantity"]
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
    if factor != 1.0:
        how += f" (recorded as {fmt_mg(value)} {known})"
    elif per_area:
        how += f" (recorded as {fmt_mg(value)} {known}, per 1.73 m² body surface, read as mL/min)"
    return value * factor, how


def _measured(facts: Facts, on: Any) -> tuple[float, str, str, date | None] | None:
    """The newest usable renal result (mL/min, how, measure, day); on the same day a measured clearance
    comes first, then Cockcroft-Gault from serum creatinine, then an eGFR."""
    matcher = facts.knowledge.valueset("renal-function-observations")
    by_day: dict[date | None, list[Mapping[str, Any]]] = {}
    for observation in facts.record.observations_in(matcher):  # newest first, undated last
        by_day.setdefault(effective_date(observation), []).append(observation)
    for day, same_day in by_day.items():
        for observation in same_day:
            if _is(observation, CLEARANCE) and (measured := _clearance(facts, observation)):
                return (*measured, MEASURED, day)
        for observation in same_day:
            if _is(observation, SERUM_CREATININE) and (estimate := _cockcroft_gault(facts, observation, on)):
                return (*estimate, COCKCROFT_GAULT, day)
        for observation in same_day:
            if not (_is(observation, CLEARANCE) or _is(observation, SERUM_CREATININE)) and (
                reading := _value(observation)
            ):
                name = concept_text(observation)
                how = (
                    f"eGFR used as a stand-in for creatinine clearance: {name} "
                    f"{fmt_mg(reading[0])} {reading[1] or 'mL/min/1.73m2'} {_when(observation)} "
                    "(the label's thresholds are for Cockcroft-Gault creatinine clearance)"
                )
                return reading[0], how, EGFR, day
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
    measured = _measured(facts, on) if "renal" not in facts.record.unavailable else None
    crcl, how, measure, day = (
        measured
        if measured
        else (None, "no creatinine clearance, serum creatinine or eGFR on record", None, None)
    )
    if esrd_conditions or (crcl is not None and crcl < limits.renal_end_stage_below):
        level: str | None = ESRD
    elif kidney_conditions or (crcl is not None and crcl <= limits.renal_impaired_up_to):
        level = IMPAIRED
    elif crcl is not None:
        level = NORMAL
    else:
        level = None
    return RenalStatus(
        level=level,
        crcl=crcl,
        how=how,
        conditions=tuple(concept_text(c) for c in kidney_conditions),
        end_stage_conditions=tuple(concept_text(c) for c in esrd_conditions),
        measure=measure,
        on=day,
    )
