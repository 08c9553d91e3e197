"""Property: the one fix of a dose card clears every dose problem of its order (issue 17, item 3).

For generated orders and records (the adult row, a child under or over 45 kg, a new start or a current
dose the draft changes, renal impairment, a liver condition, NAT2 poor metabolism, a dose in mg or in
10 mg tablets, coded or in the text, one to six doses a day), signing the update of the dose card's one
suggestion gives no dose card again. Run through the pipeline (the hook call as the endpoint runs it,
without Flask), so that Hypothesis can try many cases; tests/test_rules_one_card_per_problem.py has
explicit HTTP cases.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from helpers.builders import (
    PATIENT_ID,
    amifampridine_order,
    current_amifampridine,
    empty_prefetch,
    observation,
    order_sign,
    patient,
    searchset,
    shipped_knowledge,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cds_service.hooks.services import prefetch_templates
from cds_service.integration.offline import evaluate_request

ROOT = Path(__file__).resolve().parents[2]
UCUM = "http://unitsofmeasure.org"
DOSE_TOPICS = {"dose-single-max", "dose-daily-max", "starting-dose", "titration-step"}
LOWEST_START_TOPICS = {"renal-impairment", "hepatic-impairment", "nat2-poor-metabolizer"}
KNOWLEDGE = shipped_knowledge()
TEMPLATES = prefetch_templates(KNOWLEDGE)


def _fixture_resource(case: str, key: str) -> dict[str, Any]:
    request = json.loads((ROOT / "fixtures" / "requests" / f"{case}.json").read_text(encoding="utf-8"))
    resource = copy.deepcopy(request["prefetch"][key]["entry"][0]["resource"])
    resource["subject"] = {"reference": f"Patient/{PATIENT_ID}"}
    return resource


LIVER = _fixture_resource("hepatic-cirrhosis", "conditions")
NAT2_POOR = _fixture_resource("nat2-poor-implication", "nat2")
# (birth date, weight in kg or None): an adult, a child of 12 at 30 kg and at 50 kg.
PATIENTS = [("1970-04-12", None), ("1970-04-12", 70.0), ("2014-03-01", 30.0), ("2014-03-01", 50.0)]


def _dose_cards(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cards about a dose problem: a dose topic among their topics, or a lowest-start card with a fix."""
    found = []
    for card in cards:
        covered = set(card["extension"]["amifampridine-cds.topics"])
        if covered & DOSE_TOPICS or (covered & LOWEST_START_TOPICS and "suggestions" in card):
            found.append(card)
    return found


def _cards(draft: dict[str, Any], prefetch: dict[str, Any]) -> list[dict[str, Any]]:
    evaluation = evaluate_request(order_sign(draft, prefetch=prefetch), KNOWLEDGE, TEMPLATES)
    return evaluation.outcome.cards


orders = st.fixed_dictionaries(
    {
        "form": st.sampled_from(["mg", "tablets", "tablets-text"]),
        "amount": st.sampled_from([0.5, 1, 1.5, 2, 2.5, 3, 4]),  # tablets, or × 10 mg
        "per_day": st.integers(min_value=1, max_value=6),
    }
)
records = st.fixed_dictionaries(
    {
        "patient": st.sampled_from(PATIENTS),
        "previous": st.none() | st.tuples(st.sampled_from([2.5, 5, 10, 15, 20]), st.integers(3, 5)),
        "renal": st.booleans(),
        "hepatic": st.booleans(),
        "nat2": st.booleans(),
    }
)


def _draft(order: dict[str, Any], linked: bool) -> dict[str, Any]:
    mg = order["amount"] * 10
    draft = amifampridine_order(mg=mg, per_day=order["per_day"])
    if order["form"] == "tablets":
        quantity = {"value": order["amount"], "unit": "tablet", "system": UCUM, "code": "{tbl}"}
        draft["dosageInstruction"][0]["doseAndRate"] = [{"doseQuantity": quantity}]
    elif order["form"] == "tablets-text":
        text = f"{order['amount']:g} tablets {order['per_day']} times a day"
        draft["dosageInstruction"] = [{"sequence": 1, "text": text}]
    if linked:
        draft["priorPrescription"] = {"reference": "MedicationRequest/active-amf"}
    return draft


def _prefetch(record: dict[str, Any]) -> dict[str, Any]:
    prefetch = empty_prefetch()
    birth, weight = record["patient"]
    prefetch["patient"] = patient(birth)
    if weight is not None:
        prefetch["weight"] = searchset(observation("29463-7", weight, "kg"))
    if record["previous"] is not None:
        mg, per_day = record["previous"]
        prefetch["medications"] = searchset(current_amifampridine(mg=mg, per_day=per_day))
    if record["renal"]:
        prefetch["renal"] = searchset(observation("2164-2", 50, "mL/min"))
    if record["hepatic"]:
        prefetch["conditions"] = searchset(LIVER)
    if record["nat2"]:
        prefetch["nat2"] = searchset(NAT2_POOR)
    return prefetch


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=orders, record=records)
def test_signing_the_dose_cards_fix_gives_no_dose_card(order: dict[str, Any], record: dict[str, Any]) -> None:
    draft = _draft(order, linked=record["previous"] is not None)
    prefetch = _prefetch(record)
    dose_cards = _dose_cards(_cards(draft, prefetch))
    if not dose_cards:
        return
    event(f"dose card: {dose_cards[0]['extension']['amifampridine-cds.topics'][0]}")
    [card] = dose_cards  # one dose card per order
    [suggestion] = card["suggestions"]  # one fix
    [action] = suggestion["actions"]
    assert action["type"] == "update"
    update = action["resource"]
    dosage = update["dosageInstruction"][0]
    quantity = dosage["doseAndRate"][0]["doseQuantity"]
    # The order's own unit kept where it can: a whole number of half tablets is written in tablets.
    if order["form"] != "mg" and quantity["code"] == "mg" and quantity["value"] % 5 == 0:
        raise AssertionError(f"a whole half-tablet dose written in mg: {quantity}")
    assert quantity["code"] in {"mg", "{tbl}"}
    assert _dose_cards(_cards(update, prefetch)) == [], (card["summary"], dosage)
