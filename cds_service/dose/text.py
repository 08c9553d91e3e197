"""Reading the common free-text dosage patterns: "10 mg three times daily", "1 tab TID", "5 mg q8h".

Deliberately narrow: it finds an amount with a unit, a frequency, "as needed" and a stated daily
maximum. Anything it does not recognise is left unread, and the caller reports why.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from .numbers import fmt
from .timing import Frequency, from_code, from_interval, times_a_day
from .units import Unit, unit_named

_WORD_NUMBERS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_N = r"(\d+(?:\.\d+)?)"
_UNIT = (
    r"mg|milligrams?|mcg|micrograms?|ug|g|grams?|gm|ml|milliliters?|millilitres?|cc"
    r"|tablet\(s\)|tablets?|tabs?|tbl|pills?|capsules?|caps?"
)

# Every pattern below runs on canonical text (see ``_canonical``): no whitespace run longer than one
# character and no digit run longer than MAX_DIGITS. Their unbounded quantifiers repeat only whitespace
# or digits, so each match attempt is bounded by a constant and a scan is linear in the text's length.
MAX_DIGITS = 20
_WHITESPACE = re.compile(r"\s+")
_LONG_NUMBER = re.compile(rf"(?<!\d)\d{{{MAX_DIGITS + 1},}}")

# Text clean-up, in order: "one half", number words, "1 1/2" and "1½", other halves, dotted
# abbreviations (b.i.d. -> bid).
_ONE_HALF = re.compile(r"\bone[\s-]half\b")
_HALF_AFTER = re.compile(r"(?<!\d)(\d+)\s*(?:½|and\s+a\s+half\b|1/2\b)")
_HALF = re.compile(r"½|\b1/2\b|\bhalf(?:\s+(?:of\s+)?an?\b)?")
_WORDS = re.compile(r"\b(" + "|".join(_WORD_NUMBERS) + r")\b")
_DOTTED = re.compile(r"\b([a-z])\.\s?([a-z])\.(?:\s?([a-z])\.?)?")

_DOSE = re.compile(
    rf"(?<![\w.]){_N}(?:\s*(?:-|–|to|or)\s*{_N})?\s*({_UNIT})(?![\w/])"
    r"(\s*(?:oral\s+)?(?:tablet|tab|suspension|solution|capsule)s?\b)?"
)
_MAX = re.compile(
    r"(?:\bmax(?:imum)?\.?(?:\s+(?:of|dose))?|\bnot\s+to\s+exceed|\bdo\s+not\s+exceed|\bno\s+more\s+than"
    rf"|\bup\s+to)\s*(?::\s*)?{_N}\s*({_UNIT})\s*(?:/|per|a|in|each|every)\s*(?:1\s*)?"
    r"(?:day|d|24\s*(?:h|hr|hrs|hours?))\b"
)
_PRN = re.compile(r"\b(?:prn|as\s+needed|when\s+needed|if\s+needed|as\s+required)\b")

# Frequency patterns, most specific first; a later pattern never reuses text an earlier one matched.
_INTERVAL = re.compile(rf"\b(?:q|every|each)\s*{_N}\s*(?:(?:-|–|to)\s*{_N}\s*)?(?:h|hr|hrs|hours?)\b")
_OTHER_DAY = re.compile(r"\b(?:every\s+other\s+day|qod|alternate\s+days|every\s+(?:2|second)\s+days?)\b")
_TIMES = re.compile(rf"\b{_N}\s*(?:x|times?)\s*(?:(?:a|per|each|every|/)\s*)?(?:day|daily|d)\b")
_TWICE = re.compile(r"\b(once|twice|thrice)(?:\s*(?:(?:a|per|each|every)\s*)?(?:day|daily))?\b")
_ABBREV = re.compile(r"\b(bid|tid|qid|tds|qds|qd|od|qday|q\d{1,2}h|\d{1,2}x/?d)\b")
_DAILY = re.compile(r"\b(?:daily|every\s+day|each\s+day)\b")
_WEEKLY = re.compile(r"\b(?:weekly|once\s+a\s+week|every\s+week)\b")
_NUMBER_WORDS = {"once": 1, "twice": 2, "thrice": 3}
# Times of day. Each names one administration slot; several are added up (distinct slots), never maxed.
_SLOTS = ("morning", "noon", "afternoon", "evening", "bedtime")
_SLOT_WORDS = {
    "morning": "morning", "breakfast": "morning", "qam": "morning",
    "noon": "noon", "midday": "noon", "mid-day": "noon", "lunch": "noon", "lunchtime": "noon",
    "afternoon": "afternoon",
    "evening": "evening", "dinner": "evening", "supper": "evening", "qpm": "evening",
    "bedtime": "bedtime", "night": "bedtime", "nightly": "bedtime", "qhs": "bedtime", "hs": "bedtime",
    "am": "morning", "pm": "evening",  # only inside a pair: "am and pm"
}  # fmt: skip
_PAIR = re.compile(r"\b(morning|am)\s+and\s+(evening|night|bedtime|pm)\b")
_MEALS = re.compile(r"\b(?:with|before|after)\s+(?:(?:each|every)\s+meal|meals)\b")
_ANCHOR = re.compile(
    r"\b(?:(?:in\s+the|at|every|each|with|before|after)\s+)?"
    r"(morning|breakfast|noon|mid-?day|lunch(?:\s*time)?|afternoon|evening|dinner|supper|bedtime|night"
    r"|nightly|qam|qpm|qhs|hs)\b"
)
# Dosage texts are a line or two; reading only this much bounds the cost of hostile or pasted input.
# The service passes CDS_DOSE_TEXT_MAX_CHARS; this default serves direct callers.
MAX_TEXT = 1000


@dataclass(frozen=True)
class TextDose:
    amount: Decimal  # in ``unit``; the high end when a range was written
    unit: Unit
    written: str  # as found, for the assumptions list
    was_range: bool


@dataclass(frozen=True)
class TextReading:
    doses: tuple[TextDose, ...]  # in the order written; the caller decides between them
    frequency: Frequency | None
    as_needed: bool
    max_per_day: tuple[Decimal, Unit] | None
    notes: tuple[str, ...]
    # Set (and frequency None) when the text's frequency and times of day disagree ("5 times a day and
    # 1 tablet at bedtime"): a sentence naming the phrases, for the caller to report.
    frequency_conflict: str | None = None


def _canonical(text: str) -> str:
    """Lower case, whitespace runs as one space, numbers longer than MAX_DIGITS as "#" (not a dose)."""
    t = _WHITESPACE.sub(" ", text.lower().replace("μ", "µ"))
    return _LONG_NUMBER.sub("#", t)


def normalise(text: str) -> str:
    t = _canonical(text)
    t = _ONE_HALF.sub("half", t)
    t = _WORDS.sub(lambda m: _WORD_NUMBERS[m.group(1)], t)
    t = _HALF_AFTER.sub(lambda m: f"{m.group(1)}.5", t)
    t = _HALF.sub("0.5", t)
    return _DOTTED.sub(lambda m: "".join(g for g in m.groups() if g), t)


def _blank_all(pattern: re.Pattern[str], text: str, keep: Callable[[re.Match[str]], bool]) -> str:
    """The text with every match of ``pattern`` that ``keep`` accepts blanked, in one linear pass.

    A blanked match leaves one space, and whitespace runs are folded again, so the text stays canonical.
    """

    def blank(m: re.Match[str]) -> str:
        return " " if keep(m) else m.group(0)

    return _WHITESPACE.sub(" ", pattern.sub(blank, text))


def _doses(t: str) -> tuple[TextDose, ...]:
    """Every amount in the text; amounts that look like a product strength only when nothing else is."""
    found: list[tuple[bool, TextDose]] = []  # (looks like a product strength, dose)
    for m in _DOSE.finditer(t):
        unit = unit_named(m.group(3))
        low = Decimal(m.group(1))
        high = Decimal(m.group(2)) if m.group(2) else None
        if unit is None or low <= 0:
            continue
        amount = max(low, high) if high is not None else low
        strength_like = unit.kind == "mass" and m.group(4) is not None
        found.append((strength_like, TextDose(amount, unit, m.group(0).strip(), high is not None)))
    plain = tuple(d for like, d in found if not like)
    return plain or tuple(d for _, d in found)  # "10 mg tablet, take 2 tablets": the 2 tablets


def _phrase(m: re.Match[str]) -> str:
    return " ".join(m.group(0).split())


def _times_of_day(t: str) -> tuple[str, list[str], bool, set[str]]:
    """The times of day in the text: (text with them blanked, phrases as written, "meals" named, slots)."""
    phrases: list[str] = []
    slots: set[str] = set()
    meals = False

    def pair(m: re.Match[str]) -> bool:
        phrases.append(_phrase(m))
        slots.update((_SLOT_WORDS[m.group(1)], _SLOT_WORDS[m.group(2)]))
        return True

    def meal(m: re.Match[str]) -> bool:
        nonlocal meals
        phrases.append(_phrase(m))
        slots.update(("morning", "noon", "evening"))  # breakfast, lunch, dinner
        meals = True
        return True

    def anchor(m: re.Match[str]) -> bool:
        phrases.append(_phrase(m))
        slots.add(_SLOT_WORDS[m.group(1).replace(" ", "")])
        return True

    t = _blank_all(_PAIR, t, pair)
    t = _blank_all(_MEALS, t, meal)
    t = _blank_all(_ANCHOR, t, anchor)
    return t, phrases, meals, slots


def _slots_frequency(slots: set[str], meals: bool) -> Frequency:
    n = Decimal(len(slots))
    names = ["with meals"] if meals else []
    meal_slots = {"morning", "noon", "evening"} if meals else set()
    names += [s for s in _SLOTS if s in slots and s not in meal_slots]
    return Frequency(n, f"{times_a_day(n)} ({', '.join(names)})")


def _quoted(phrases: list[str]) -> str:
    return ", ".join(f'"{p}"' for p in dict.fromkeys(phrases))


def _mismatch(frequencies: list[str], anchors: list[str], slots: int) -> str:
    one = slots == 1
    where = "the dose at that time is one of" if one else "the doses at those times are among"
    return (
        f"The dosage text gives a frequency ({_quoted(frequencies)}) and {'a time' if one else 'times'} of "
        f"day ({_quoted(anchors)}) that do not match: it is unclear whether {where} those doses or extra, "
        "so the number of doses a day and the daily total could not be worked out."
    )


def _frequency(t: str, notes: list[str]) -> tuple[Frequency | None, str | None]:
    """The frequency the text gives, or None with a sentence saying why the text is ambiguous."""
    found: list[tuple[Frequency, str]] = []  # generic frequencies ("3 times a day", "q8h", "daily")
    scratch: list[str] = []

    def take(pattern: re.Pattern[str], make: Callable[[re.Match[str]], Frequency | None]) -> None:
        nonlocal t

        def keep(m: re.Match[str]) -> bool:
            f = make(m)
            if f is not None:
                found.append((f, _phrase(m)))
            return f is not None

        t = _blank_all(pattern, t, keep)

    def interval(m: re.Match[str]) -> Frequency | None:
        hours = Decimal(m.group(1))
        if hours <= 0:
            return None
        if m.group(2) is None:
            return from_interval(Decimal(1), hours, f"every {fmt(hours)} hours", scratch)
        scratch.append(f"shortest interval of the range counted (every {m.group(1)}–{m.group(2)} hours)")
        return from_interval(Decimal(1), hours, f"every {fmt(hours)} hours", scratch)

    def word(m: re.Match[str]) -> Frequency:
        n = Decimal(_NUMBER_WORDS[m.group(1)])
        return Frequency(n, times_a_day(n))

    def times(m: re.Match[str]) -> Frequency | None:
        n = Decimal(m.group(1))
        return Frequency(n, times_a_day(n)) if n > 0 and n == n.to_integral_value() else None

    take(_INTERVAL, interval)
    take(_OTHER_DAY, lambda m: from_interval(Decimal(1), Decimal(48), "every other day", scratch))
    take(_TIMES, times)
    take(_TWICE, word)
    t, anchors, meals, slots = _times_of_day(t)
    take(_ABBREV, lambda m: from_code(m.group(1), scratch))
    take(_DAILY, lambda m: Frequency(Decimal(1), "once a day"))
    take(_WEEKLY, lambda m: from_interval(Decimal(1), Decimal(168), "every week", scratch))
    if not found and not slots:
        return None, None
    if not found:  # only times of day: one dose at each distinct time
        notes.extend(scratch)
        return _slots_frequency(slots, meals), None
    best = max((f for f, _ in found), key=lambda f: f.per_day)
    if slots and best.per_day != len(slots):
        return None, _mismatch([p for _, p in found], anchors, len(slots))
    # Times of day that agree with the frequency only say when the doses are taken.
    if len({f.per_day for f, _ in found}) > 1:
        notes.append(f"several frequencies in the text: the most frequent ({best.label}) counted")
    notes.extend(scratch)
    return best, None


def read(text: str, max_chars: int = MAX_TEXT) -> TextReading:
    """Everything the text says about amount, frequency, as-needed use and a daily maximum.

    Only the first ``max_chars`` characters are read. The work is linear in what is read: a fixed
    number of regular-expression scans, each linear on canonical text (see MAX_DIGITS).
    """
    return read_texts([text], max_chars)


def read_texts(texts: Sequence[str], max_chars: int = MAX_TEXT) -> TextReading:
    """``read`` for the texts of one dosage (text, patientInstruction) taken together, each cut to
    ``max_chars``."""
    notes: list[str] = []
    if any(len(text) > max_chars for text in texts):
        notes.append(f"only the first {max_chars} characters of the instruction text were read")
    t = normalise(" ; ".join(text[:max_chars] for text in texts))
    max_per_day = None
    m = _MAX.search(t)
    if m:
        unit = unit_named(m.group(2))
        if unit is not None and Decimal(m.group(1)) > 0:
            max_per_day = (Decimal(m.group(1)), unit)
        t = _WHITESPACE.sub(" ", f"{t[: m.start()]} {t[m.end() :]}")
    as_needed = bool(_PRN.search(t))
    doses = _doses(t)
    # The amount's own words ("2 tabs") must not read as a frequency.
    t = _blank_all(_DOSE, t, lambda _: True)
    frequency, conflict = _frequency(t, notes)
    return TextReading(doses, frequency, as_needed, max_per_day, tuple(notes), conflict)
