"""compute_dose: mg per dose and per day for a MedicationRequest / MedicationOrder (plain JSON dicts)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from . import text as text_reader
from .numbers import DoseProblem, fmt, number, to_float
from .result import REASONS, DosePhase, DoseResult
from .timing import PERIOD_HOURS, Frequency, coded_frequency
from .units import ProductStrength, Unit, classify, contained_medication, product_strength, unit_label

_DAY = Decimal(24)
# An order has one dosage line per phase or simultaneous part: a handful. The service passes
# CDS_DOSE_MAX_LINES; past it the dose is not worked out at all (a line's cost is bounded, not the order's).
MAX_DOSAGE_LINES = 20
# timing.code texts read per line when no code is recognised (text plus a few coding displays).
_MAX_CODE_TEXTS = 3
# Characters of dosage text read for one order, all lines together (CDS_DOSE_TEXT_MAX_CHARS_PER_ORDER):
# the reader's time is linear in this, so it bounds the time of one order.
MAX_ORDER_TEXT = 5000
_MEDICATION_TYPES = {None, "MedicationRequest", "MedicationOrder"}


@dataclass
class _Context:
    strength: ProductStrength
    default_tablet_mg: Decimal
    suspension_mg_per_ml: Decimal
    max_text_chars: int = text_reader.MAX_TEXT
    max_order_chars: int = MAX_ORDER_TEXT
    chars_read: int = 0

    def read(self, texts: list[str]) -> text_reader.TextReading:
        """Read dosage texts, counting them against the order's budget (DoseProblem when it is spent)."""
        size = sum(min(len(t), self.max_text_chars) for t in texts)
        if self.chars_read + size > self.max_order_chars:
            raise DoseProblem(
                "too-much-dose-text",
                f"The dosage texts of this order are longer than the {self.max_order_chars} characters "
                "this service reads for one order, so the dose was not checked.",
            )
        self.chars_read += size
        return text_reader.read_texts(texts, self.max_text_chars)


@dataclass(frozen=True)
class _Amount:
    value: Decimal
    unit: Unit


@dataclass
class _Line:
    """One dosage instruction, worked out."""

    mg_per_dose: Decimal
    doses_per_day: Decimal
    mg_per_day: Decimal
    arithmetic: str
    from_text: bool
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- amounts and units


def _quantity(q: Any, what: str) -> _Amount:
    if not isinstance(q, Mapping):
        raise DoseProblem("invalid-value", f"The {what} is not a FHIR Quantity.")
    comparator = q.get("comparator")
    if comparator in (">", ">="):
        raise DoseProblem("invalid-value", f"The {what} has no upper limit ({comparator}).")
    value = number(q.get("value"), what)
    unit = classify(q)
    if unit is None:
        raise DoseProblem(
            "unknown-unit", f'The {what} unit "{unit_label(q)}" cannot be converted to milligrams.'
        )
    return _Amount(value, unit)


def _range(r: Any, notes: list[str]) -> _Amount:
    if not isinstance(r, Mapping):
        raise DoseProblem("invalid-value", "The dose range is not a FHIR Range.")
    high, low = r.get("high"), r.get("low")
    if isinstance(high, Mapping) and high.get("value") is not None:
        unitless = not (high.get("code") or high.get("unit"))
        if unitless and isinstance(low, Mapping) and low.get("value") is not None:
            high = {**low, "value": high["value"]}  # unit written on the low end only
        amount = _quantity(high, "upper end of the dose range")
        notes.append("high end of the dose range counted")
        return amount
    if isinstance(low, Mapping) and low.get("value") is not None:
        notes.append("dose range without an upper end: its lower end counted, actual use may be higher")
        return _quantity(low, "lower end of the dose range")
    raise DoseProblem("no-dose", "The dose range has neither a low nor a high value.")


def _coded_doses(dosage: Mapping[str, Any], notes: list[str]) -> list[_Amount]:
    """Every dose the dosage states: on the dosage itself (STU3/DSTU2) and in doseAndRate (R4)."""
    doses: list[_Amount] = []
    if dosage.get("doseQuantity") is not None:
        doses.append(_quantity(dosage["doseQuantity"], "dose"))
    if dosage.get("doseRange") is not None:
        doses.append(_range(dosage["doseRange"], notes))
    entries = dosage.get("doseAndRate")
    if isinstance(entries, Mapping):  # seen in the HL7 example library: an object, not a list
        entries = [entries]
    if isinstance(entries, list):
        entries = [e for e in entries if isinstance(e, Mapping)]
        ordered = [e for e in entries if _type_code(e) == "ordered"]
        for entry in ordered or entries:
            if entry.get("doseQuantity") is not None:
                doses.append(_quantity(entry["doseQuantity"], "dose"))
            if entry.get("doseRange") is not None:
                doses.append(_range(entry["doseRange"], notes))
    return doses


def _type_code(entry: Mapping[str, Any]) -> str | None:
    cc = entry.get("type")
    codings = cc.get("coding") if isinstance(cc, Mapping) else None
    for c in codings if isinstance(codings, list) else []:
        if isinstance(c, Mapping) and isinstance(c.get("code"), str):
            return c["code"]
    return None


def _to_mg(amount: _Amount, ctx: _Context, notes: list[str]) -> tuple[Decimal, str]:
    """mg in one dose, and how the arithmetic text writes it ("2 tablets × 10 mg")."""
    v, unit = amount.value, amount.unit
    if unit.kind == "mass":
        mg = v * unit.factor
        return mg, (f"{fmt(mg)} mg" if unit.label == "mg" else f"{fmt(v)} {unit.label} (= {fmt(mg)} mg)")
    if unit.kind == "volume":
        ml = v * unit.factor
        if ctx.strength.per_ml is not None:
            per_ml = ctx.strength.per_ml.mg
            notes.append(ctx.strength.per_ml.note)
        else:
            per_ml = ctx.suspension_mg_per_ml
            notes.append(f"concentration {fmt(per_ml)} mg/mL (amifampridine oral suspension)")
        return ml * per_ml, f"{fmt(ml)} mL × {fmt(per_ml)} mg/mL"
    # A count of tablets or capsules.
    if ctx.strength.per_unit is not None:
        each = ctx.strength.per_unit.mg
        notes.append(ctx.strength.per_unit.note)
    elif unit.kind == "tablet":
        each = ctx.default_tablet_mg
        notes.append(f"tablet strength {fmt(each)} mg (amifampridine tablets)")
    else:
        raise DoseProblem(
            "unknown-strength", f"The dose is in {unit.label}s and the product strength is not known."
        )
    name = unit.label if v <= 1 else f"{unit.label}s"
    return v * each, f"{fmt(v)} {name} × {fmt(each)} mg"


# ---------------------------------------------------------------- maxima and as-needed use


def _stated_max(dosage: Mapping[str, Any], ctx: _Context, notes: list[str]) -> tuple[Decimal, bool] | None:
    """The largest mg per day allowed by maxDosePerPeriod, and whether its period is longer than a day."""
    raw = dosage.get("maxDosePerPeriod")
    ratios = raw if isinstance(raw, list) else [raw] if raw is not None else []  # R5 allows several
    best: tuple[Decimal, bool] | None = None
    for ratio in ratios:
        if not isinstance(ratio, Mapping):
            raise DoseProblem("invalid-value", "The maximum dose per period is not a FHIR Ratio.")
        mg, _ = _to_mg(_quantity(ratio.get("numerator"), "maximum dose per period"), ctx, notes)
        den = ratio.get("denominator")
        hours = _DAY
        if isinstance(den, Mapping) and den.get("value") is not None:
            unit_raw = den.get("code") if isinstance(den.get("code"), str) else den.get("unit")
            unit_hours = PERIOD_HOURS.get(unit_raw.strip().lower()) if isinstance(unit_raw, str) else None
            if unit_hours is None:
                raise DoseProblem("invalid-value", "The period of the maximum dose has no unit of time.")
            hours = number(den["value"], "period of the maximum dose") * unit_hours
        else:
            notes.append("maximum dose given without a period: per day assumed")
        per_day = (mg * _DAY / hours, False) if hours <= _DAY else (mg, True)
        if best is None or per_day[0] > best[0]:
            best = per_day
    return best


def _text_dose(reading: text_reader.TextReading, ctx: _Context, notes: list[str]) -> tuple[Decimal, str]:
    """The dose written in the text; when it names different amounts (in mg), the largest counts."""
    converted = []
    for d in reading.doses:
        own_notes: list[str] = []  # only the chosen amount's assumptions are reported
        mg, expr = _to_mg(_Amount(d.amount, d.unit), ctx, own_notes)
        converted.append((mg, expr, own_notes, d))
    mg, expr, own_notes, chosen = converted[0]
    several = len({c[0] for c in converted}) > 1
    if several:
        mg, expr, own_notes, chosen = max(converted, key=lambda c: c[0])
    notes.append(f'dose read from the instruction text ("{chosen.written}")')
    notes.extend(own_notes)
    if several:
        notes.append(f'several different amounts in the text: the largest ("{chosen.written}") counted')
    if chosen.was_range:
        notes.append("high end of the dose range in the text counted")
    return mg, expr


def _as_needed(dosage: Mapping[str, Any]) -> bool:
    if dosage.get("asNeededBoolean") is True or dosage.get("asNeeded") is True:
        return True
    return any(dosage.get(k) for k in ("asNeededCodeableConcept", "asNeededFor"))


def _texts(dosage: Mapping[str, Any]) -> list[str]:
    texts = [dosage.get("text"), dosage.get("patientInstruction")]
    return [t for t in texts if isinstance(t, str) and t.strip()]


# ---------------------------------------------------------------- one dosage instruction


def _line(dosage: Any, ctx: _Context) -> _Line:
    if not isinstance(dosage, Mapping):
        raise DoseProblem("invalid-value", "A dosage instruction is not a JSON object.")
    notes: list[str] = []
    from_text = False
    texts = _texts(dosage)
    reading = ctx.read(texts) if texts else None

    # The dose: coded first; several coded doses must agree.
    amounts = _coded_doses(dosage, notes)
    if amounts:
        converted = [_to_mg(a, ctx, notes) for a in amounts]
        if len({mg for mg, _ in converted}) > 1:
            written = ", ".join(expr for _, expr in converted)
            raise DoseProblem("conflicting-entries", f"The dosage states different doses: {written}.")
        mg_dose, dose_expr = converted[0]
    elif reading is not None and reading.doses:
        from_text = True
        mg_dose, dose_expr = _text_dose(reading, ctx, notes)
    elif texts:
        raise DoseProblem("unparseable-text", "No dose amount could be read from the instruction text.")
    else:
        raise DoseProblem("no-dose", REASONS["no-dose"])

    if not to_float(mg_dose):
        # A positive amount smaller than the result's precision (a millionth of a mg) is not a dose.
        raise DoseProblem("invalid-value", f"The dose ({dose_expr}) is too small to be a real dose.")

    admin_max = dosage.get("maxDosePerAdministration")
    if admin_max is not None:
        mg_admin, admin_expr = _to_mg(_quantity(admin_max, "maximum dose per administration"), ctx, notes)
        if mg_admin > mg_dose:
            notes.append(f"stated maximum per administration ({admin_expr}) counted as the dose")
            mg_dose, dose_expr = mg_admin, admin_expr

    # The frequency: structured timing, then timing.code text, then the instruction text.
    frequency, code_texts = coded_frequency(dosage.get("timing"), notes)
    if frequency is None:
        for code_text in code_texts[:_MAX_CODE_TEXTS]:
            code_reading = ctx.read([code_text])
            if code_reading.frequency_conflict:
                raise DoseProblem("conflicting-entries", code_reading.frequency_conflict)
            frequency = code_reading.frequency
            if frequency:
                break
        if frequency is None and reading is not None and reading.frequency_conflict:
            raise DoseProblem("conflicting-entries", reading.frequency_conflict)
        if frequency is None and reading is not None and reading.frequency is not None:
            frequency = reading.frequency
            from_text = True
            notes.append("frequency read from the instruction text")
    if reading is not None and (from_text or not amounts):
        notes.extend(reading.notes)

    as_needed = _as_needed(dosage) or (reading is not None and reading.as_needed)
    if as_needed:
        notes.append("as needed: the most frequent use allowed is counted")

    stated = _stated_max(dosage, ctx, notes)
    if stated is None and reading is not None and reading.max_per_day is not None:
        value, unit = reading.max_per_day
        mg_max, _ = _to_mg(_Amount(value, unit), ctx, notes)
        stated = (mg_max, False)
        from_text = True
        notes.append("daily maximum read from the instruction text")

    if frequency is None and stated is None:
        if texts:
            raise DoseProblem("no-frequency", "How often to take the dose could not be read from the order.")
        raise DoseProblem("no-frequency", REASONS["no-frequency"])
    return _daily(mg_dose, dose_expr, frequency, stated, from_text, notes)


def _daily(
    mg_dose: Decimal,
    dose_expr: str,
    frequency: Frequency | None,
    stated: tuple[Decimal, bool] | None,
    from_text: bool,
    notes: list[str],
) -> _Line:
    if frequency is not None:
        scheduled = mg_dose * frequency.per_day
        arithmetic = f"{dose_expr} × {frequency.label} = {fmt(scheduled)} mg/day"
        if stated is None:
            return _Line(mg_dose, frequency.per_day, scheduled, arithmetic, from_text, notes)
        limit, longer_than_day = stated
        daily = min(limit, scheduled) if longer_than_day else limit
        notes.append(f"stated maximum of {fmt(limit)} mg used as the daily amount")
        arithmetic += f"; stated maximum {fmt(limit)} mg, so {fmt(daily)} mg/day is counted"
        return _Line(mg_dose, frequency.per_day, daily, arithmetic, from_text, notes)
    assert stated is not None
    limit, _ = stated
    doses = limit / mg_dose
    notes.append(f"no frequency given: the stated maximum allows {fmt(doses)} doses a day")
    arithmetic = f"{dose_expr} per dose; stated maximum {fmt(limit)} mg/day"
    return _Line(mg_dose, doses, limit, arithmetic, from_text, notes)


# ---------------------------------------------------------------- phases and the public entry point


def _sequence_key(dosage: Any) -> int | str | None:
    seq = dosage.get("sequence") if isinstance(dosage, Mapping) else None
    if isinstance(seq, bool) or seq is None:
        return None
    if isinstance(seq, int):
        return seq
    if isinstance(seq, float) and seq.is_integer():
        return int(seq)
    return str(seq)[:20]


def _dedupe(notes: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(notes))


def _phase(sequence: int | str | None, dosages: list[Any], ctx: _Context) -> DosePhase:
    try:
        lines = [_line(d, ctx) for d in dosages]
    except DoseProblem as p:
        return DosePhase(sequence, False, None, None, None, "coded", (), "", p.reason, p.detail)
    mg_day = sum((ln.mg_per_day for ln in lines), Decimal(0))
    doses = sum((ln.doses_per_day for ln in lines), Decimal(0))
    if len(lines) == 1:
        arithmetic = lines[0].arithmetic
    else:  # instructions with the same sequence are taken together
        arithmetic = " + ".join(f"({ln.arithmetic})" for ln in lines) + f" = {fmt(mg_day)} mg/day in total"
    return DosePhase(
        sequence=sequence,
        ok=True,
        mg_per_dose=to_float(max(ln.mg_per_dose for ln in lines)),
        mg_per_day=to_float(mg_day),
        doses_per_day=to_float(doses),
        source="text" if any(ln.from_text for ln in lines) else "coded",
        assumptions=_dedupe([n for ln in lines for n in ln.notes]),
        arithmetic=arithmetic,
    )


def _compute(
    request: Any,
    medication: Any,
    default_tablet_mg: Any,
    suspension_mg_per_ml: Any,
    max_lines: int,
    max_text_chars: int,
    max_order_chars: int,
) -> DoseResult:
    if not isinstance(request, Mapping):
        raise DoseProblem("invalid-request", REASONS["invalid-request"])
    if request.get("resourceType") not in _MEDICATION_TYPES:
        raise DoseProblem("not-a-medication-request", REASONS["not-a-medication-request"])
    dosages = request.get("dosageInstruction")
    if isinstance(dosages, Mapping):
        dosages = [dosages]
    if dosages is None or dosages == []:
        raise DoseProblem("no-dosage", REASONS["no-dosage"])
    if not isinstance(dosages, list):
        raise DoseProblem("invalid-value", "The dosage instructions are not a list.")
    if len(dosages) > max_lines:
        raise DoseProblem(
            "too-many-dosage-lines",
            f"The order has {len(dosages)} dosage instructions; this service works out the dose of an "
            f"order with at most {max_lines}, so the dose was not checked.",
        )

    if not isinstance(medication, Mapping):
        medication = contained_medication(request)
    ctx = _Context(
        strength=product_strength(request, medication, max_text_chars),
        default_tablet_mg=number(default_tablet_mg, "default tablet strength"),
        suspension_mg_per_ml=number(suspension_mg_per_ml, "default suspension concentration"),
        max_text_chars=max_text_chars,
        max_order_chars=max_order_chars,
    )

    groups: dict[int | str | None, list[Any]] = {}
    for dosage in dosages:
        groups.setdefault(_sequence_key(dosage), []).append(dosage)
    order = sorted(groups, key=lambda k: (0, k, "") if isinstance(k, int) else (1, 0, str(k)))
    phases = tuple(_phase(seq, groups[seq], ctx) for seq in order)

    failed = next((p for p in phases if not p.ok), None)
    if failed is not None:
        detail = failed.reason_text
        if len(phases) > 1:
            detail = f"Sequence {failed.sequence}: {detail}"
        return DoseResult.failure(failed.reason or "internal-error", detail, phases=phases)

    top = max(phases, key=lambda p: p.mg_per_day or 0.0)
    if len(phases) == 1:
        arithmetic = top.arithmetic
    else:
        arithmetic = "; ".join(f"sequence {p.sequence}: {p.arithmetic}" for p in phases)
    return DoseResult(
        ok=True,
        mg_per_dose=max(p.mg_per_dose or 0.0 for p in phases),
        mg_per_day=top.mg_per_day,
        doses_per_day=top.doses_per_day,
        source="text" if any(p.source == "text" for p in phases) else "coded",
        assumptions=_dedupe([a for p in phases for a in p.assumptions]),
        arithmetic=arithmetic,
        reason=None,
        reason_text=None,
        phases=phases,
    )


def compute_dose(
    request: Mapping[str, Any],
    *,
    medication: Mapping[str, Any] | None = None,
    default_tablet_mg: float = 10.0,
    suspension_mg_per_ml: float = 1.0,
    max_lines: int = MAX_DOSAGE_LINES,
    max_text_chars: int = text_reader.MAX_TEXT,
    max_order_chars: int = MAX_ORDER_TEXT,
) -> DoseResult:
    """mg per dose and per day for a MedicationRequest (R4/STU3) or MedicationOrder (DSTU2).

    ``medication`` is the resolved Medication when the order references one; a ``#contained`` reference
    is resolved here. Never raises: any input it cannot read gives ``ok=False`` with a reason code.
    The work is linear in the input and bounded: at most ``max_lines`` dosage lines (more gives
    ``too-many-dosage-lines``), the first ``max_text_chars`` characters of each text, and at most
    ``max_order_chars`` for the whole order (more gives ``too-much-dose-text``).
    """
    try:
        return _compute(
            request,
            medication,
            default_tablet_mg,
            suspension_mg_per_ml,
            max_lines,
            max_text_chars,
            max_order_chars,
        )
    except DoseProblem as p:
        return DoseResult.failure(p.reason, p.detail)
    except Exception:  # a safety net only; tests assert this path is never taken
        return DoseResult.failure("internal-error")
