"""cds_service.knowledge.textmatch: names in free text and the NegEx-style cues of cards/text-negation.yaml.

The work per text is bounded structurally: ``Scan.examined`` counts the characters handed to a pattern,
which is at most the text read (MAX_TEXT) plus a fixed window around each name found. No wall clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.knowledge.loader import KnowledgeError, load_knowledge
from cds_service.knowledge.textmatch import (
    MAX_TEXT,
    TEXT_NEGATION,
    WINDOW_CHARS,
    CueError,
    CueTable,
    compile_cues,
    concept_texts,
    find_name,
    first_words,
    may_name,
    scan_text,
    words_of,
)
from cds_service.knowledge.valuesets import names_pattern

ROOT = Path(__file__).resolve().parents[2]
KNOWLEDGE = load_knowledge(ROOT / "cards")
CUES: CueTable = KNOWLEDGE.data[TEXT_NEGATION]
SEIZURE_NAMES = KNOWLEDGE.valueset("seizure-disorders").names


def found(text: str) -> str | None:
    hit = scan_text(text, SEIZURE_NAMES, CUES).found()
    return hit.name if hit else None


def cue_of(text: str) -> tuple[str, str] | None:
    (hit,) = scan_text(text, SEIZURE_NAMES, CUES).hits
    return (hit.cue.kind, hit.cue.phrase) if hit.cue else None


def test_the_shipped_table_loads_compiled() -> None:
    assert isinstance(CUES, CueTable)
    assert CUES.max_words == 5


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Epilepsy", "Epilepsy"),
        ("History of seizures", "seizures"),
        ("h/o epilepsy", "epilepsy"),
        ("Seizure-free since 2019", "Seizure"),
        ("No new seizures on levetiracetam", "seizures"),  # pseudo-negation
        ("Seizure disorder not ruled out", "Seizure disorder"),  # pseudo-negation
        ("No fever. Seizures at night", "Seizures"),  # the negation ends with its sentence
        ("Epilepsy, unspecified, not intractable, without status epilepticus", "Epilepsy"),  # ICD display
        ("No headache but convulsions", "convulsions"),  # 'but' ends the clause
        ("no fever, chills, nausea, vomiting, rash, cough or seizures", "seizures"),  # beyond 5 words
    ],
)
def test_a_name_counts(text: str, name: str) -> None:
    assert found(text) == name


@pytest.mark.parametrize(
    ("text", "kind", "cue"),
    [
        ("No seizures", "negation", "no"),
        ("no history of seizures", "negation", "no history of"),
        ("Patient denies seizures", "negation", "denies"),
        ("Negative for epilepsy", "negation", "negative for"),
        ("without convulsions", "negation", "without"),
        ("Seizures ruled out", "negation", "ruled out"),
        ("No fever, chills or seizures", "negation", "no"),  # a list stays in the clause
        ("Family history of epilepsy", "family", "family history of"),
        ("FH: epilepsy", "family", "fh"),
        ("Mother has epilepsy", "family", "mother has"),
        ("Epilepsy in father", "family", "in father"),
        ("Rule out seizure", "rule-out", "rule out"),
        ("r/o seizure disorder", "rule-out", "r/o"),
    ],
)
def test_a_cue_excludes_the_name(text: str, kind: str, cue: str) -> None:
    assert found(text) is None
    assert cue_of(text) == (kind, cue)


@pytest.mark.parametrize(
    ("text", "cue"),
    [("Suspected epilepsy", "suspected"), ("?seizure", "?"), ("Possible seizure", "possible")],
)
def test_doubt_is_kept_and_named(text: str, cue: str) -> None:
    """A suspicion still counts (docs/rules.md): the cue is named but does not exclude."""
    assert found(text) is not None
    assert cue_of(text) == ("uncertain", cue)


def test_a_cue_beyond_the_window_does_not_reach_the_name() -> None:
    assert found("no fever, chills, nausea, vomiting or seizures") is None  # 5 words between
    assert found("no fever, chills, nausea, vomiting, rash or seizures") == "seizures"  # 6


def test_a_word_that_ends_in_a_cue_is_not_the_cue() -> None:
    assert cue_of("Snow seizures") is None  # "no" inside "Snow" is no negation


def test_find_name_reads_fields_in_order_and_reports_exclusions() -> None:
    concept = {"text": "No seizures", "coding": [{"code": "X", "display": "Convulsions"}]}
    hit, excluded = find_name(concept_texts(concept, "code"), SEIZURE_NAMES, CUES)
    assert hit is not None and (hit.name, hit.field) == ("Convulsions", "code.coding[0].display")
    assert [(e.name, e.field, e.cue.phrase if e.cue else None) for e in excluded] == [
        ("seizures", "code.text", "no")
    ]


def test_an_empty_table_excludes_nothing() -> None:
    assert scan_text("No seizures", SEIZURE_NAMES, CueTable.empty()).found() is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a mapping with 'cues'"),
        ({"cues": {"negation": {"before": ["no"]}}}, "needs 'excludes: true'"),
        ({"cues": {"negation": {"excludes": True, "before": ["no", ""]}}}, "list of non-empty strings"),
        ({"cues": {"family": {"excludes": True, "before": ["{relative} has"]}}}, "without 'relatives'"),
        ({"max_words": 0, "cues": {}}, "max_words"),
        (
            {"cues": {"a": {"excludes": True, "before": ["no"]}, "b": {"excludes": False, "before": ["No"]}}},
            "is in 'a' and 'b'",
        ),
    ],
)
def test_a_broken_table_is_refused_with_its_reason(data: object, message: str) -> None:
    with pytest.raises(CueError, match=message):
        compile_cues(data, "text-negation.yaml")


def test_a_broken_table_stops_the_start(tmp_path: Path) -> None:
    import shutil

    cards = tmp_path / "cards"
    shutil.copytree(ROOT / "cards", cards)
    (cards / "text-negation.yaml").write_text("cues:\n  negation:\n    before: [no]\n", encoding="utf-8")
    with pytest.raises(KnowledgeError, match=r"text-negation\.yaml: cue group 'negation'"):
        load_knowledge(cards)


# --- bounded work ---------------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    ["no", "not", "seizure", "seizures", "epilepsy", "family history of", "mother has", "r/o", "?", "but",
     ";", ".", ",", "-free", "x", " ", "  ", "\n", "ruled out", "not ruled out", "in mother", "denies"]
)  # fmt: skip


def _bound(text: str, hits: int) -> int:
    """Characters a scan may hand to patterns: the text read once, plus two windows on each side of each
    name (the terminator search and the cue search)."""
    return min(len(text), MAX_TEXT) + hits * 4 * WINDOW_CHARS


@settings(max_examples=150, deadline=None)
@given(st.lists(_PIECES, max_size=2500).map(" ".join))
def test_work_is_linear_in_the_text(text: str) -> None:
    scan = scan_text(text, SEIZURE_NAMES, CUES)
    # Each occurrence costs a bounded window, whatever the length of the text before it.
    assert scan.examined <= _bound(text, len(scan.hits))


def test_a_10_kb_adversarial_text_is_cut_at_max_text_and_costs_a_bounded_window_per_name() -> None:
    text = ("no no no seizure " * 700)[:10_240]
    scan = scan_text(text, SEIZURE_NAMES, CUES)
    assert len(text) > MAX_TEXT
    assert all(hit.excluded for hit in scan.hits)
    assert len(scan.hits) == text[:MAX_TEXT].count("seizure")  # only MAX_TEXT characters are read
    assert scan.examined <= _bound(text, len(scan.hits))


def test_the_patterns_are_plain_alternations() -> None:
    """Names and cues compile to alternations of escaped literals: no quantifier that could backtrack
    (the only one is \\s+ between the words of one phrase)."""
    pattern = names_pattern(["epilepsy", "seizure disorder"])
    for compiled in (pattern, CUES.before, CUES.after, CUES.terminators):
        assert compiled is not None
        literal = compiled.pattern.replace(r"\s+", " ").replace(r"\*", "").replace(r"\+", "")
        assert not any(quantifier in literal for quantifier in ("*", "+", "{"))


# --- the word shortcut never hides a name ---------------------------------------------------------------

_NAMED_SETS = [name for name, matcher in KNOWLEDGE.valuesets.items() if matcher.names is not None]


def test_every_shipped_names_pattern_has_first_words() -> None:
    """The shortcut is in force for every value set with names (else every resource is read: slower)."""
    assert {name: first_words(KNOWLEDGE.valueset(name).names) is not None for name in _NAMED_SETS} == {
        name: True for name in _NAMED_SETS
    }


def test_a_pattern_of_another_shape_gets_no_shortcut() -> None:
    import re

    assert first_words(re.compile(r"\bepilepsy\b")) is None
    assert first_words(names_pattern(["?seizure"])) is None  # a name that does not start with a word


_TEXT_PIECES = st.sampled_from(
    ["Epilepsy", "seizure", "CKD", "stage 5", "end-stage", "renal", "disease", "3,4-DAP", "firdapse", "-",
     "(", ")", " ", ",", "x", "no", "Cirrhosis", "hepatic", "failure", "é", "1", "/", "Lennox-Gastaut"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_TEXT_PIECES, max_size=30).map("".join), st.sampled_from(_NAMED_SETS))
def test_the_word_shortcut_never_rejects_a_text_the_names_match(text: str, valueset: str) -> None:
    names = KNOWLEDGE.valueset(valueset).names
    assert names is not None
    if names.search(text):
        assert may_name(names, words_of([text]))
