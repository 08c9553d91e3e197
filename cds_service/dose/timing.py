"""How many doses a day a FHIR Timing allows at most (repeat, timeOfDay, when, timing.code)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .numbers import DoseProblem, ceil_whole, fmt, number

_DAY = Decimal(24)

# UCUM time units (and common spellings) in hours.
PERIOD_HOURS: dict[str, Decimal] = {}
for _hours, _names in (
    (Decimal(1) / 3600, "s sec second seconds"),
    (Decimal(1) / 60, "min minute minutes"),
    (Decimal(1), "h hr hrs hour hours"),
    (_DAY, "d day days"),
    (Decimal(168), "wk w week weeks"),
    (Decimal(720), "mo month months"),
    (Decimal(8760), "a y yr year years"),
):
    for _name in _names.split():
        PERIOD_HOURS[_name] = _hours

# Timing.repeat.when (http://hl7.org/fhir/event-timing, v3 TimingEvent): each code is one event a day;
# the meal codes C/AC/PC stand for the three meals.
_MEALS = {"C": ("CM", "CD", "CV"), "AC": ("ACM", "ACD", "ACV"), "PC": ("PCM", "PCD", "PCV")}


@dataclass(frozen=True)
class Frequency:
    per_day: Decimal  # most doses that can fall on one (dosing) day
    label: str  # e.g. "3 times a day", "3 times a day (every 8 hours)"


def times_a_day(n: Decimal) -> str:
    if n == 1:
        return "once a day"
    if n == 2:
        return "twice a day"
    return f"{fmt(n)} times a day"


def _period_phrase(period: Decimal, unit_hours: Decimal, unit_name: str) -> str:
    names = {Decimal(1): "hour", _DAY: "day", Decimal(168): "week", Decimal(720): "month"}
    name = names.get(unit_hours, unit_name)
    return f"every {name}" if period == 1 else f"every {fmt(period)} {name}s"


def from_interval(freq: Decimal, period_hours: Decimal, phrase: str, notes: list[str]) -> Frequency:
    """``freq`` doses every ``period_hours``: the most that fit in one day, or on one dosing day."""
    exact = freq * _DAY / period_hours
    per_day = max(ceil_whole(exact), Decimal(1))
    if period_hours == _DAY:
        return Frequency(per_day, times_a_day(per_day))
    if period_hours < _DAY:
        if per_day != exact:
            notes.append(f"{phrase}: at most {fmt(per_day)} doses fit in one day")
        return Frequency(per_day, f"{times_a_day(per_day)} ({phrase})")
    notes.append(f"{phrase}: the amount taken on a dosing day is counted")
    return Frequency(per_day, f"{times_a_day(per_day)} on dosing days ({phrase})")


def _from_repeat(repeat: Mapping[str, Any], notes: list[str]) -> Frequency | None:
    candidates: list[Frequency] = []
    freq_raw, freq_max_raw = repeat.get("frequency"), repeat.get("frequencyMax")
    period_raw = repeat.get("period")
    if freq_raw is not None or freq_max_raw is not None or period_raw is not None:
        freq = number(freq_raw, "frequency") if freq_raw is not None else Decimal(1)
        if freq_max_raw is not None:
            freq_max = number(freq_max_raw, "maximum frequency")
            if freq_max > freq:
                notes.append(f"upper end of the frequency range ({fmt(freq)}–{fmt(freq_max)}) counted")
                freq = freq_max
        if period_raw is None:
            notes.append("frequency given without a period: per day assumed")
            candidates.append(from_interval(freq, _DAY, "per day", notes))
        else:
            period = number(period_raw, "timing period")
            unit_raw = repeat.get("periodUnit", repeat.get("periodUnits"))  # DSTU2 spells it periodUnits
            unit_hours = PERIOD_HOURS.get(unit_raw.strip().lower()) if isinstance(unit_raw, str) else None
            if unit_hours is None:
                raise DoseProblem("no-frequency", "The timing gives a period without a unit of time.")
            period_max_raw = repeat.get("periodMax")
            phrase = _period_phrase(period, unit_hours, str(unit_raw))
            if period_max_raw is not None and number(period_max_raw, "maximum period") > period:
                notes.append(f"shortest interval of the range counted ({phrase})")
            candidates.append(from_interval(freq, period * unit_hours, phrase, notes))
    times = repeat.get("timeOfDay")
    if isinstance(times, list) and times:
        n = Decimal(len({t for t in times if isinstance(t, str)}))
        if n:
            candidates.append(Frequency(n, f"{times_a_day(n)} (at set times)"))
    when = repeat.get("when")
    if isinstance(when, list) and when:
        events: set[str] = set()
        for code in when:
            if isinstance(code, str):
                events.update(_MEALS.get(code.strip().upper(), (code.strip().upper(),)))
        if events:
            n = Decimal(len(events))
            candidates.append(Frequency(n, f"{times_a_day(n)} (at named times of day)"))
    if not candidates:
        return None
    best = max(candidates, key=lambda f: f.per_day)
    if len({c.per_day for c in candidates}) > 1:
        notes.append("frequency, times of day and events disagree: the most doses a day counted")
    return best


# timing.code (v3 GTSAbbreviation and common local codes) -> (doses, period in hours)
_CODE_TABLE: dict[str, tuple[int, int]] = {
    "QD": (1, 24), "OD": (1, 24), "DAILY": (1, 24), "QDAY": (1, 24), "AM": (1, 24), "PM": (1, 24),
    "QAM": (1, 24), "QPM": (1, 24), "BED": (1, 24), "HS": (1, 24), "QHS": (1, 24), "QN": (1, 24),
    "BID": (2, 24), "TID": (3, 24), "TDS": (3, 24), "QID": (4, 24), "QDS": (4, 24),
    "QOD": (1, 48), "WK": (1, 168), "QWK": (1, 168), "MO": (1, 720),
}  # fmt: skip
_CODE_PHRASES = {48: "every other day", 168: "every week", 720: "every month"}
_CODE_QH = re.compile(r"^Q(\d{1,2})(?:-\d{1,2})?H(?:R|RS)?$")
_CODE_XD = re.compile(r"^(\d{1,2})X/?D(?:AY)?$")


def from_code(code: str, notes: list[str]) -> Frequency | None:
    """A frequency from a timing abbreviation such as TID, Q8H, QOD or 5X/D."""
    c = re.sub(r"[\s.]", "", code.upper())
    if c in _CODE_TABLE:
        doses, hours = _CODE_TABLE[c]
        phrase = _CODE_PHRASES.get(hours, code.strip())
        return from_interval(Decimal(doses), Decimal(hours), phrase, notes)
    m = _CODE_QH.match(c)
    if m and int(m.group(1)) > 0:
        return from_interval(Decimal(1), Decimal(m.group(1)), f"every {int(m.group(1))} hours", notes)
    m = _CODE_XD.match(c)
    if m and int(m.group(1)) > 0:
        n = Decimal(m.group(1))
        return Frequency(n, times_a_day(n))
    return None


def coded_frequency(timing: Any, notes: list[str]) -> tuple[Frequency | None, list[str]]:
    """The frequency from structured timing, and the timing.code texts left for the text reader.

    When both timing.repeat and timing.code give a frequency and they disagree, the order is ambiguous.
    """
    if not isinstance(timing, Mapping):
        return None, []
    repeat = timing.get("repeat")
    from_rep = _from_repeat(repeat, notes) if isinstance(repeat, Mapping) else None
    code_texts: list[str] = []
    from_cc: Frequency | None = None
    cc = timing.get("code")
    if isinstance(cc, Mapping):
        codings = cc.get("coding")
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
                from_cc = from_code(coding["code"], notes)
                if from_cc:
                    break
        if from_cc is None:
            code_texts = [t for t in (cc.get("text"),) if isinstance(t, str)]
            for coding in codings if isinstance(codings, list) else []:
                if isinstance(coding, Mapping) and isinstance(coding.get("display"), str):
                    code_texts.append(coding["display"])
    if from_rep and from_cc and from_rep.per_day != from_cc.per_day:
        raise DoseProblem(
            "conflicting-entries",
            f"The timing repeat ({from_rep.label}) and the timing code ({from_cc.label}) disagree.",
        )
    return from_rep or from_cc, code_texts
