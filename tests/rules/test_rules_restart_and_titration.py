"""A restart and an unreadable current dose: the starting-dose and titration checks never pass in silence.

Through the HTTP API with the clinical review's reproducers rebuilt from fixtures, asserting on each
card's topic code.
"""

from __future__ import annotations

import copy
from pathlib import Path

from helpers.builders import topics
from helpers.fixture_calls import cards_for, first_draft, make_client, request_for


def test_a_restart_after_the_previous_order_stopped_is_judged_as_a_start(tmp_path: Path) -> None:
    # The draft names its priorPrescription, but that order was stopped: the patient is not on the drug.
    request = request_for("starting-dose-60mg")
    first_draft(request)["priorPrescription"] = {"reference": "MedicationRequest/amf-stopped-last-year"}
    assert "starting-dose" in topics(cards_for(make_client(tmp_path), request))


def test_an_unreadable_current_dose_is_a_titration_step_not_checked(tmp_path: Path) -> None:
    request = request_for("titration-15mg-rise")
    current = next(
        entry["resource"]
        for entry in request["prefetch"]["medications"]["entry"]
        if entry["resource"].get("status") == "active"
    )
    current["dosageInstruction"] = [{"text": "Take as directed"}]
    cards = cards_for(make_client(tmp_path), copy.deepcopy(request))
    (card,) = [c for c in cards if c["source"]["topic"]["code"] == "titration-step"]
    assert card["summary"].startswith("Amifampridine titration step not checked")
    assert "not checked" in card["detail"]
