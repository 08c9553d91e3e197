"""The dose-text reader's work is linear in its input and bounded per order (issue 15, item 5).

Work is counted, never timed: every regular expression of ``cds_service.dose.text`` is wrapped in a
proxy that counts its calls and the characters it is given, and checks that the text is canonical
(whitespace runs of one character, digit runs of at most MAX_DIGITS). Together with the shape of the
patterns (their unbounded repeats are over whitespace or digits only), that bounds every match attempt by
a constant, so each scan is linear and the number of scans per text is fixed.
"""

from __future__ import annotations

import copy
import json
import re
import re._constants as sre_constants  # type: ignore[import-not-found]
import re._parser as sre_parse  # type: ignore[import-not-found]
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.dose import compute_dose
from cds_service.dose import text as text_reader

ROOT = Path(__file__).resolve().parents[2]
SIGN = "/cds-services/amifampridine-order-sign"
# The two patterns that make the text canonical; their own shapes (\s+ and (?<!\d)\d{21,}) are linear.
CANONICALISERS = {"_WHITESPACE", "_LONG_NUMBER"}
LONG_WHITESPACE = re.compile(r"\s{2,}")
LONG_DIGITS = re.compile(rf"\d{{{text_reader.MAX_DIGITS + 1},}}")


@dataclass
class Work:
    calls: int = 0
    chars: int = 0
    not_canonical: list[str] = field(default_factory=list)


class CountingPattern:
    """A stand-in for a compiled pattern that counts what it is asked to scan."""

    def __init__(self, name: str, pattern: re.Pattern[str], work: Work) -> None:
        self._name, self._pattern, self._work = name, pattern, work

    def _count(self, text: str) -> None:
        self._work.calls += 1
        self._work.chars += len(text)
        if self._name not in CANONICALISERS and (LONG_WHITESPACE.search(text) or LONG_DIGITS.search(text)):
            self._work.not_canonical.append(self._name)

    def search(self, text: str, *args: Any) -> Any:
        self._count(text)
        return self._pattern.search(text, *args)

    def finditer(self, text: str, *args: Any) -> Any:
        self._count(text)
        return self._pattern.finditer(text, *args)

    def sub(self, repl: Any, text: str, *args: Any) -> str:
        self._count(text)
        return self._pattern.sub(repl, text, *args)

    def match(self, text: str, *args: Any) -> Any:
        self._count(text)
        return self._pattern.match(text, *args)


def _patterns() -> dict[str, re.Pattern[str]]:
    return {name: value for name, value in vars(text_reader).items() if isinstance(value, re.Pattern)}


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Iterator[Work]:
    counted = Work()
    for name, pattern in _patterns().items():
        monkeypatch.setattr(text_reader, name, CountingPattern(name, pattern, counted))
    yield counted


def measure(work: Work, text: str, max_chars: int = 1000) -> tuple[int, int]:
    work.calls = work.chars = 0
    text_reader.read(text, max_chars)
    assert not work.not_canonical, f"patterns ran on non-canonical text: {sorted(set(work.not_canonical))}"
    return work.calls, work.chars


# ---------------------------------------------------------------- the shape of the patterns


def _unbounded_repeats(tree: Any) -> Iterator[Any]:
    for op, arg in tree:
        if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
            _low, high, body = arg
            if high == sre_constants.MAXREPEAT:
                yield body
            yield from _unbounded_repeats(body)
        elif op == sre_constants.SUBPATTERN:
            yield from _unbounded_repeats(arg[-1])
        elif op == sre_constants.BRANCH:
            for branch in arg[1]:
                yield from _unbounded_repeats(branch)
        elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
            yield from _unbounded_repeats(arg[1])


def _is_space_or_digit(body: Any) -> bool:
    allowed = {sre_constants.CATEGORY_SPACE, sre_constants.CATEGORY_DIGIT}
    return (
        len(body) == 1
        and body[0][0] == sre_constants.IN
        and all(op == sre_constants.CATEGORY and arg in allowed for op, arg in body[0][1])
    )


@pytest.mark.parametrize("name", sorted(set(_patterns()) - CANONICALISERS))
def test_patterns_repeat_only_whitespace_or_digits_without_bound(name: str) -> None:
    # On canonical text such a repeat matches at most MAX_DIGITS characters, so an attempt is bounded.
    tree = sre_parse.parse(_patterns()[name].pattern)
    offending = [body for body in _unbounded_repeats(tree) if not _is_space_or_digit(body)]
    assert not offending, f"{name} repeats something other than \\s or \\d without bound: {offending}"


# ---------------------------------------------------------------- linear work per text

TOKENS = [
    "10 mg ", "1 ", "1.5 ", "tid ", "bid ", "q8h ", "every 4 hours ", "3 times a day ", "2x/d ", "daily ",
    "morning ", "in the evening ", "at bedtime ", "with meals ", "am and pm ", "max 30 mg/day ",
    "1 1/2 ", "one half ", "½ ", "b.i.d. ", "twice ", "prn ", "to ", "or ", "- ", "tabs ", "x ", "/ ",
]  # fmt: skip
adversarial_text = st.lists(
    st.one_of(
        st.sampled_from(TOKENS),
        st.integers(min_value=1, max_value=3000).map(lambda n: "1" * n),
        st.integers(min_value=1, max_value=3000).map(lambda n: " " * n),
        st.integers(min_value=1, max_value=500).map(lambda n: "1." * n),
        st.text(alphabet="0123456789 .-/xqmgtabd\t\n½", max_size=200),
    ),
    max_size=60,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(adversarial_text)
def test_work_per_text_is_a_fixed_number_of_linear_scans(text: str) -> None:
    # A fixture cannot be used with @given; the patterns are wrapped and restored here.
    counted = Work()
    originals = _patterns()
    try:
        for name, pattern in originals.items():
            setattr(text_reader, name, CountingPattern(name, pattern, counted))
        calls, chars = measure(counted, text)
    finally:
        for name, pattern in originals.items():
            setattr(text_reader, name, pattern)
    # What the patterns scan is the normalised text, which may be longer than the raw one ("½" -> "0.5").
    read = max(min(len(text), 1000), len(text_reader.normalise(text[:1000])))
    assert calls <= 40  # a fixed number of scans, whatever the text holds
    assert chars <= 40 * read + 40  # each of them over at most what was read


@pytest.mark.parametrize(
    "unit",
    ["10 mg ", "tid ", "morning noon evening ", "1 x ", "3 times a day ", "1" * 50 + " ", "max ", "1.1 ",
     "every 8 hours ", "in the morning ", "b.i.d. "],
)  # fmt: skip
def test_doubling_the_text_at_most_doubles_the_work(work: Work, unit: str) -> None:
    n = max(1, 200 // len(unit))
    calls_n, chars_n = measure(work, unit * n, max_chars=100_000)
    calls_2n, chars_2n = measure(work, unit * 2 * n, max_chars=100_000)
    assert calls_2n == calls_n  # no scan per match
    assert chars_2n <= 2 * chars_n + 10


def test_only_the_configured_characters_are_read(work: Work) -> None:
    calls_short, chars_short = measure(work, "10 mg tid " * 30, max_chars=200)
    calls_long, chars_long = measure(work, "10 mg tid " * 3000, max_chars=200)
    assert (calls_long, chars_long) == (calls_short, chars_short)
    reading = text_reader.read("10 mg tid " * 3000, 200)
    assert any("first 200 characters" in note for note in reading.notes)


def test_a_number_longer_than_any_dose_is_not_read_as_one() -> None:
    reading = text_reader.read("1" * 5000 + " mg tid")
    assert reading.doses == ()


# ---------------------------------------------------------------- bounded per order


def order(lines: int, text: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "medicationCodeableConcept": {"text": "amifampridine 10 MG Oral Tablet"},
        "dosageInstruction": [{"text": text, "patientInstruction": text} for _ in range(lines)],
    }


def test_an_order_with_more_dosage_lines_than_the_bound_is_unverifiable(work: Work) -> None:
    result = compute_dose(order(21, "10 mg tid"), max_lines=20)
    assert not result.ok and result.reason == "too-many-dosage-lines"
    assert "21 dosage instructions" in (result.reason_text or "") and "at most 20" in (
        result.reason_text or ""
    )
    assert work.calls == 0  # refused before any text is read


def test_the_work_of_an_order_is_bounded_by_lines_times_characters(work: Work) -> None:
    text = "10 mg tid 1 x every 6 hours 1.1 1 1/2 " * 300  # ~11,000 characters a text
    result = compute_dose(order(20, text), max_lines=20, max_text_chars=1000, max_order_chars=10**6)
    assert result.ok
    # One reading per line of (text + patientInstruction), each cut to 1000 characters.
    assert work.calls <= 20 * 40
    assert work.chars <= 20 * 40 * (2 * 1000 + 3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(adversarial_text, adversarial_text), min_size=1, max_size=8), st.integers(1, 6))
def test_the_work_of_any_order_is_bounded_by_the_line_bound(lines: list[tuple[str, str]], bound: int) -> None:
    counted = Work()
    originals = _patterns()
    request = {
        "resourceType": "MedicationRequest",
        "dosageInstruction": [{"text": a, "patientInstruction": b} for a, b in lines],
    }
    try:
        for name, pattern in originals.items():
            setattr(text_reader, name, CountingPattern(name, pattern, counted))
        result = compute_dose(request, max_lines=bound, max_text_chars=300)
    finally:
        for name, pattern in originals.items():
            setattr(text_reader, name, pattern)
    if len(lines) > bound:
        assert result.reason == "too-many-dosage-lines" and counted.calls == 0
    read_lines = min(len(lines), bound)
    assert counted.calls <= 40 * read_lines
    assert counted.chars <= 40 * read_lines * (2 * 300 + 3) + 40 * read_lines
    assert not counted.not_canonical


def test_the_text_of_an_order_is_read_only_up_to_its_budget(work: Work) -> None:
    text = "10 mg tid 1 x every 6 hours 1.1 1 1/2 " * 300
    result = compute_dose(order(20, text), max_lines=20, max_text_chars=1000, max_order_chars=5000)
    assert not result.ok and result.reason == "too-much-dose-text"
    assert "5000 characters" in (result.reason_text or "")
    # Two lines of 2 x 1000 characters fit; the third would pass the budget and is not read.
    assert work.chars <= 2 * 40 * (2 * 1000 + 3)
    assert compute_dose(order(2, text), max_text_chars=1000, max_order_chars=5000).ok


def test_many_product_codings_are_read_only_up_to_the_bound() -> None:
    request = order(1, "1 tablet tid")
    request["medicationCodeableConcept"]["coding"] = [{"display": "10 mg/" + " " * 50_000 + "x"}] * 20
    assert compute_dose(request).ok


# ---------------------------------------------------------------- through the HTTP API


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    env = {"CDS_AUTH": "off", "CDS_DATA_DIR": str(tmp_path_factory.mktemp("data")), "CDS_DOSE_MAX_LINES": "5"}
    return create_app(Settings.from_env(env)).test_client()


def test_too_many_dosage_lines_gives_a_dose_unverifiable_card_naming_the_bound(client: Any) -> None:
    path = ROOT / "fixtures" / "requests" / "clean-adult-new-start.json"
    request = copy.deepcopy(json.loads(path.read_text(encoding="utf-8")))
    crafted = "10 mg three times daily " + "1 " * 900
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["dosageInstruction"] = [{"text": crafted, "sequence": 1} for _ in range(6)]
    response = client.post(SIGN, json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    cards = response.get_json()["cards"]
    assert [card["source"]["topic"]["code"] for card in cards] == ["dose-unverifiable"]
    assert "6 dosage instructions" in cards[0]["detail"] and "at most 5" in cards[0]["detail"]


def test_too_much_dose_text_gives_a_dose_unverifiable_card(client: Any) -> None:
    path = ROOT / "fixtures" / "requests" / "clean-adult-new-start.json"
    request = copy.deepcopy(json.loads(path.read_text(encoding="utf-8")))
    crafted = "10 mg three times daily " + "1 " * 600
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["dosageInstruction"] = [{"text": crafted, "patientInstruction": crafted, "sequence": 1}] * 3
    response = client.post(SIGN, json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    cards = response.get_json()["cards"]
    assert [card["source"]["topic"]["code"] for card in cards] == ["dose-unverifiable"]
    assert "longer than the 5000 characters" in cards[0]["detail"]
