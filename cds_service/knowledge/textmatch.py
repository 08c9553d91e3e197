"""Names in free text, unless a NegEx-style cue in the same clause excludes them.

The name backstop of conditions and allergies: a resource whose code is in no value set is still matched
when a text field names the concept (the value set's match-text names), but not "no seizures", "family
history of epilepsy" or "rule out seizure". The cues are data, in ``cards/text-negation.yaml``, compiled
once at load into one alternation per side (before / after the name).

Cost is linear in the text: one pass of the name alternation over at most MAX_TEXT characters, then for
each name found a window of at most WINDOW_CHARS characters on each side, cut at the end of the clause.
``Scan.examined`` counts the characters handed to the patterns, so tests can assert that bound.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TEXT_NEGATION = "text-negation"  # cards/text-negation.yaml, in Knowledge.data after load
# One field of a problem-list entry or an allergy is a line; the rest of a longer text is not read.
MAX_TEXT = 4096
# Characters looked at on each side of a name: enough for a cue and max_words words.
WINDOW_CHARS = 120
_WORD = re.compile(r"[^\W_]+(?:[/'][^\W_]+)*")
_PLACEHOLDER = "{relative}"


class CueError(ValueError):
    """cards/text-negation.yaml is unusable; the loader stops the start with this message."""


@dataclass(frozen=True)
class Cue:
    phrase: str  # as written in cards/text-negation.yaml (relatives filled in)
    kind: str  # the group it comes from: negation, family, rule-out, uncertain, pseudo
    excludes: bool


@dataclass(frozen=True)
class CueTable:
    """The compiled cue table. ``empty()`` excludes nothing (a knowledge directory without the table)."""

    before: re.Pattern[str] | None
    after: re.Pattern[str] | None
    cues_before: Mapping[str, Cue]
    cues_after: Mapping[str, Cue]
    terminators: re.Pattern[str] | None
    max_words: int

    @classmethod
    def empty(cls) -> CueTable:
        return cls(None, None, {}, {}, None, 0)


@dataclass(frozen=True)
class NameHit:
    """One occurrence of a name in a field, and the cue around it, if any."""

    name: str  # as written in the text
    field: str  # where: "code.text", "code.coding[0].display", ...
    cue: Cue | None = None

    @property
    def excluded(self) -> bool:
        return self.cue is not None and self.cue.excludes


@dataclass
class Scan:
    hits: list[NameHit] = field(default_factory=list)
    examined: int = 0  # characters handed to a pattern: at most MAX_TEXT + 4 * WINDOW_CHARS per hit

    def found(self) -> NameHit | None:
        """The first occurrence no cue excludes."""
        return next((hit for hit in self.hits if not hit.excluded), None)


def _key(phrase: str) -> str:
    return " ".join(phrase.lower().split())


def _alternation(phrases: Collection[str]) -> re.Pattern[str] | None:
    """Whole-phrase, case-insensitive alternation, longest first (so "not ruled out" beats "not").
    A phrase edge that is punctuation ("?", ": none") needs no word boundary there."""
    parts = [r"\n"] if "\n" in phrases else []  # the line break terminator: no words to join
    for phrase in sorted({_key(p) for p in phrases if p.strip()}, key=len, reverse=True):
        body = r"\s+".join(re.escape(word) for word in phrase.split())
        head = r"(?<![^\W_])" if phrase[0].isalnum() else ""
        tail = r"(?![^\W_])" if phrase[-1].isalnum() else ""
        parts.append(f"{head}{body}{tail}")
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _strings(value: Any, origin: str, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise CueError(f"{origin}: '{where}' must be a list of non-empty strings")
    return value


def _expand(phrase: str, relatives: list[str], origin: str) -> list[str]:
    """The phrase, or one phrase per relative when it says {relative} ("{relative} has": "mother has"...)."""
    if _PLACEHOLDER not in phrase:
        return [phrase]
    if not relatives:
        raise CueError(f"{origin}: '{phrase}' uses {_PLACEHOLDER} in a group without 'relatives'")
    return [phrase.replace(_PLACEHOLDER, relative) for relative in relatives]


def compile_cues(data: Any, origin: str) -> CueTable:
    """Compile the YAML table; raise CueError naming what is wrong."""
    if not isinstance(data, Mapping) or not isinstance(data.get("cues"), Mapping):
        raise CueError(f"{origin}: expected a mapping with 'cues'")
    max_words = data.get("max_words", 5)
    if isinstance(max_words, bool) or not isinstance(max_words, int) or not 0 < max_words <= 10:
        raise CueError(f"{origin}: 'max_words' must be a whole number from 1 to 10")
    sides: dict[str, dict[str, Cue]] = {"before": {}, "after": {}}
    for kind, group in data["cues"].items():
        if not isinstance(group, Mapping) or not isinstance(group.get("excludes"), bool):
            raise CueError(f"{origin}: cue group '{kind}' needs 'excludes: true' or 'excludes: false'")
        relatives = _strings(group.get("relatives"), origin, f"{kind}.relatives")
        for side, cues in sides.items():
            for phrase in _strings(group.get(side), origin, f"{kind}.{side}"):
                for text in _expand(phrase, relatives, origin):
                    previous = cues.get(_key(text))
                    if previous and previous.kind != kind:
                        raise CueError(f"{origin}: '{text}' ({side}) is in '{previous.kind}' and '{kind}'")
                    cues[_key(text)] = Cue(text, str(kind), group["excludes"])
    return CueTable(
        before=_alternation(sides["before"]),
        after=_alternation(sides["after"]),
        cues_before=sides["before"],
        cues_after=sides["after"],
        terminators=_alternation([*_strings(data.get("terminators"), origin, "terminators"), "\n"]),
        max_words=max_words,
    )


def _words(text: str, start: int, end: int) -> int:
    return len(_WORD.findall(text, start, end))


def _cue_before(text: str, start: int, table: CueTable, scan: Scan) -> Cue | None:
    """The excluding cue nearest before ``start`` in its clause (else a kept cue such as "suspected")."""
    if table.before is None:
        return None
    low = max(0, start - WINDOW_CHARS)
    if table.terminators is not None:
        scan.examined += start - low
        for stop in table.terminators.finditer(text, low, start):
            low = stop.end()
    scan.examined += start - low
    kept: Cue | None = None
    excluding: Cue | None = None
    for match in table.before.finditer(text, low, start):
        cue = table.cues_before[_key(match.group(0))]
        if cue.kind == "pseudo" or _words(text, match.end(), start) > table.max_words:
            continue
        if cue.excludes:
            excluding = cue  # the last one wins: the nearest to the name
        else:
            kept = cue
    return excluding or kept


def _cue_after(text: str, end: int, limit: int, table: CueTable, scan: Scan) -> Cue | None:
    if table.after is None:
        return None
    high = min(limit, end + WINDOW_CHARS)
    if table.terminators is not None:
        scan.examined += high - end
        stop = table.terminators.search(text, end, high)
        if stop is not None:
            high = stop.start()
    scan.examined += high - end
    for match in table.after.finditer(text, end, high):
        if _words(text, end, match.start()) > table.max_words:
            break
        cue = table.cues_after[_key(match.group(0))]
        if cue.kind != "pseudo":
            return cue
    return None


def scan_text(text: str, names: re.Pattern[str] | None, table: CueTable, where: str = "text") -> Scan:
    """Every occurrence of a name in ``text`` (its first MAX_TEXT characters), each with its cue."""
    scan = Scan()
    if names is None or not isinstance(text, str) or not text:
        return scan
    limit = min(len(text), MAX_TEXT)
    scan.examined += limit
    for match in names.finditer(text, 0, limit):
        cue = _cue_before(text, match.start(), table, scan)
        if cue is None or not cue.excludes:
            cue = _cue_after(text, match.end(), limit, table, scan) or cue
        scan.hits.append(NameHit(match.group(0), where, cue))
    return scan


_TOKEN = re.compile(r"[a-z0-9]+")
_NAMES_SHAPE = re.compile(r"\(\?<!\[a-z0-9\]\)\(\?:(?P<body>.*)\)\(\?!\[a-z0-9\]\)", re.DOTALL)
# id(pattern) -> (pattern, its first words): hashing a Pattern hashes its compiled code, an id does not.
_FIRST_WORDS: dict[int, tuple[re.Pattern[str], frozenset[str] | None]] = {}


def words_of(texts: Iterable[str]) -> frozenset[str]:
    """The lower-case words (runs of a-z, 0-9) of the texts, each read up to MAX_TEXT characters."""
    return frozenset(_TOKEN.findall(" ".join(text[:MAX_TEXT] for text in texts).lower()))


def first_words(names: re.Pattern[str]) -> frozenset[str] | None:
    """The first word of each name of a ``valuesets.names_pattern`` alternation; None (no shortcut) when
    the pattern has another shape or a name does not start with a word.

    A name matches only where its first word stands as a whole word of the text (the pattern demands a
    non-alphanumeric character before the name, and after the first word comes either the end of the
    name, where a non-alphanumeric must follow, or the name's own non-alphanumeric character).
    """
    known = _FIRST_WORDS.get(id(names))
    if known is not None and known[0] is names:
        return known[1]
    shape = _NAMES_SHAPE.fullmatch(names.pattern)
    keys: set[str] | None = None
    if shape is not None and names.flags & re.IGNORECASE:
        keys = set()
        for part in re.split(r"(?<!\\)\|", shape.group("body")):
            first = _TOKEN.match(re.sub(r"\\(.)", r"\1", part, flags=re.DOTALL).lower())
            if first is None:
                keys = None
                break
            keys.add(first.group(0))
    result = frozenset(keys) if keys is not None else None
    _FIRST_WORDS[id(names)] = (names, result)
    return result


def may_name(names: re.Pattern[str], words: frozenset[str]) -> bool:
    """False only when no name of ``names`` can occur in a text of these ``words``: a set test that spares
    the regex for the many conditions that name nothing."""
    keys = first_words(names)
    return keys is None or not keys.isdisjoint(words)


def concept_texts(concept: Any, element: str) -> list[tuple[str, str]]:
    """(field, text) of a CodeableConcept: its text, then each coding's display."""
    if not isinstance(concept, dict):  # decoded JSON: dict is much cheaper to test than Mapping
        return []
    texts = []
    text = concept.get("text")
    if isinstance(text, str):
        texts.append((f"{element}.text", text))
    for index, coding in enumerate(concept.get("coding") or ()):
        if isinstance(coding, dict) and isinstance(display := coding.get("display"), str):
            texts.append((f"{element}.coding[{index}].display", display))
    return texts


def find_name(
    texts: Iterable[tuple[str, str]], names: re.Pattern[str] | None, table: CueTable
) -> tuple[NameHit | None, list[NameHit]]:
    """The first name no cue excludes across the fields, and the excluded occurrences seen before it."""
    excluded: list[NameHit] = []
    for where, text in texts:
        scan = scan_text(text, names, table, where)
        hit = scan.found()
        if hit is not None:
            return hit, excluded
        excluded.extend(scan.hits)
    return None, excluded
