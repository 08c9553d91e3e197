"""Free-text frequencies: times of day are added up (distinct slots), never maxed; a frequency and times of
day that disagree leave the dose unverifiable. Clinical review item 1 (the daily dose was under-counted)."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers.builders import topics

from cds_service.app import create_app
from cds_service.config import Settings
from cds_service.dose import compute_dose
from cds_service.dose.text import read

ROOT = Path(__file__).resolve().parents[2]
SIGN = "/cds-services/amifampridine-order-sign"


def text_order(text: str, **dosage: Any) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"text": "amifampridine 10 MG Oral Tablet"},
        "dosageInstruction": [{"text": text, **dosage}],
    }


# ---------------------------------------------------------------- read(): times of day only


@pytest.mark.parametrize(
    ("text", "per_day", "label"),
    [
        ("20 mg in the morning, at noon, in the evening and at bedtime", 4,
         "4 times a day (morning, noon, evening, bedtime)"),
        ("10 mg by mouth in the morning, at noon and in the evening", 3,
         "3 times a day (morning, noon, evening)"),
        ("20 mg before meals and at bedtime", 4, "4 times a day (with meals, bedtime)"),
        ("10 mg with each meal and at bedtime", 4, "4 times a day (with meals, bedtime)"),
        ("10 mg with meals", 3, "3 times a day (with meals)"),
        ("10 mg in the morning", 1, "once a day (morning)"),
        ("10 mg qhs", 1, "once a day (bedtime)"),
        ("10 mg every morning; take it in the morning with water", 1, "once a day (morning)"),
        ("10 mg morning and evening", 2, "twice a day (morning, evening)"),
        ("10 mg am and pm", 2, "twice a day (morning, evening)"),
        ("10 mg morning, noon and night", 3, "3 times a day (morning, noon, bedtime)"),
        ("10 mg qam and qpm and qhs", 3, "3 times a day (morning, evening, bedtime)"),
        ("10 mg in the morning and at lunchtime", 2, "twice a day (morning, noon)"),
    ],
)  # fmt: skip
def test_times_of_day_alone_count_one_dose_per_distinct_time(text: str, per_day: int, label: str) -> None:
    reading = read(text)
    assert reading.frequency_conflict is None
    assert reading.frequency is not None
    assert reading.frequency.per_day == per_day
    assert reading.frequency.label == label


# ---------------------------------------------------------------- read(): with a frequency


@pytest.mark.parametrize(
    ("text", "per_day"),
    [
        ("10 mg daily in the morning", 1),
        ("20 mg once daily at bedtime", 1),
        ("1 tab twice daily, morning and evening", 2),
        ("10 mg three times a day with meals", 3),
        ("10 mg tid with meals", 3),
        ("10 mg qid: morning, noon, evening and bedtime", 4),
        ("10 mg every other day in the morning", 1),
    ],
)
def test_times_of_day_that_agree_with_the_frequency_only_say_when(text: str, per_day: int) -> None:
    reading = read(text)
    assert reading.frequency_conflict is None
    assert reading.frequency is not None and reading.frequency.per_day == per_day


@pytest.mark.parametrize(
    ("text", "phrases"),
    [
        ("2 tablets 5 times a day and 1 tablet at bedtime", ['"5 times a day"', '"at bedtime"']),
        ("10 mg twice daily and at bedtime", ['"twice daily"', '"at bedtime"']),
        ("10 mg tid with meals and at bedtime", ['"tid"', '"with meals"', '"at bedtime"']),
        ("10 mg once daily, morning and evening", ['"once daily"', '"morning and evening"']),
        ("10 mg every 4 hours, in the morning", ['"every 4 hours"', '"in the morning"']),
    ],
)
def test_a_frequency_and_times_of_day_that_disagree_are_not_guessed(text: str, phrases: list[str]) -> None:
    reading = read(text)
    assert reading.frequency is None
    assert reading.frequency_conflict is not None
    for phrase in phrases:
        assert phrase in reading.frequency_conflict
    assert "do not match" in reading.frequency_conflict


def test_several_generic_frequencies_still_count_the_most_frequent() -> None:
    reading = read("10 mg twice daily or three times a day")
    assert reading.frequency_conflict is None
    assert reading.frequency is not None and reading.frequency.per_day == Decimal(3)
    assert any("several frequencies in the text" in n for n in reading.notes)


# ---------------------------------------------------------------- compute_dose


@pytest.mark.parametrize(
    ("text", "mg_per_day", "doses_per_day"),
    [
        ("20 mg in the morning, at noon, in the evening and at bedtime", 80, 4),
        ("10 mg by mouth in the morning, at noon and in the evening", 30, 3),
        ("20 mg before meals and at bedtime", 80, 4),
        ("10 mg with each meal and at bedtime", 40, 4),
        # no regression: the times of day agree with the frequency, or there is only one
        ("10 mg daily in the morning", 10, 1),
        ("1 tab twice daily, morning and evening", 20, 2),
        ("10 mg three times a day with meals", 30, 3),
        ("10 mg in the morning", 10, 1),
    ],
)
def test_daily_amount_from_text(text: str, mg_per_day: float, doses_per_day: float) -> None:
    result = compute_dose(text_order(text))
    assert result.ok, (result.reason, result.reason_text)
    assert result.source == "text"
    assert result.mg_per_day == mg_per_day and result.doses_per_day == doses_per_day
    assert f"= {mg_per_day:g} mg/day" in result.arithmetic


def test_text_that_disagrees_with_itself_is_conflicting_entries() -> None:
    result = compute_dose(text_order("2 tablets 5 times a day and 1 tablet at bedtime"))
    assert not result.ok and result.mg_per_day is None
    assert result.reason == "conflicting-entries"
    assert result.reason_text is not None
    assert '"5 times a day"' in result.reason_text and '"at bedtime"' in result.reason_text


def test_coded_timing_still_wins_over_the_text() -> None:
    dose = {"doseAndRate": [{"doseQuantity": {"value": 10, "code": "mg"}}]}
    timing = {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}}
    result = compute_dose(text_order("twice daily and at bedtime", timing=timing, **dose))
    assert result.ok and result.mg_per_day == 30


def test_timing_code_text_that_disagrees_with_itself_is_conflicting_entries() -> None:
    request = text_order("10 mg", timing={"code": {"text": "twice daily and at bedtime"}})
    result = compute_dose(request)
    assert result.reason == "conflicting-entries"


# ---------------------------------------------------------------- the reviewed requests, over HTTP


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = Settings.from_env({"CDS_AUTH": "off", "CDS_DATA_DIR": str(tmp_path_factory.mktemp("data"))})
    return create_app(settings).test_client()


def fixture_with_text(case_id: str, text: str) -> dict[str, Any]:
    """The fixture request with its draft's dosage replaced by free text (as in the review's cases)."""
    path = ROOT / "fixtures" / "requests" / f"{case_id}.json"
    request = copy.deepcopy(json.loads(path.read_text(encoding="utf-8")))
    request["context"]["draftOrders"]["entry"][0]["resource"]["dosageInstruction"] = [{"text": text}]
    return request


def cards_for(client: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post(SIGN, json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


def test_new_start_80_mg_written_as_four_times_of_day(client: Any) -> None:
    request = fixture_with_text(
        "clean-adult-new-start", "20 mg in the morning, at noon, in the evening and at bedtime"
    )
    cards = cards_for(client, request)
    assert topics(cards) == ["starting-dose"]
    assert "80 mg/day" in cards[0]["summary"]


def test_nat2_poor_metabolizer_new_start_written_as_three_times_of_day(client: Any) -> None:
    request = fixture_with_text(
        "nat2-poor-implication", "10 mg by mouth in the morning, at noon and in the evening"
    )
    cards = cards_for(client, request)
    assert topics(cards) == ["nat2-poor-metabolizer"]
    (card,) = cards
    assert "already at or below the lowest initial dose" not in card["detail"]
    assert "30 mg/day" in card["detail"]


def test_five_times_a_day_plus_bedtime_is_unverifiable_not_guessed(client: Any) -> None:
    # "2 tablets 5 times a day and 1 tablet at bedtime" is 110 mg/day if the bedtime tablet is a sixth
    # dose, or 90 mg/day if it replaces one of the five: the text does not say, so the dose is reported as
    # unverifiable (the card asks for the daily total) rather than guessed; before the fix it was read as
    # 100 mg/day and only a starting-dose card appeared.
    request = fixture_with_text("clean-adult-new-start", "2 tablets 5 times a day and 1 tablet at bedtime")
    cards = cards_for(client, request)
    assert topics(cards) == ["dose-unverifiable"]
    assert '"5 times a day"' in cards[0]["detail"] and '"at bedtime"' in cards[0]["detail"]
