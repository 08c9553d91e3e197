"""Dose facts and the dose rules (label Table 1), from FHIR JSON with no Flask and no database."""

from __future__ import annotations

from helpers.builders import (
    amifampridine_order,
    current_amifampridine,
    observation,
    patient,
    rule_context,
)

from cds_service.knowledge.dose_table import CHILD_UNDER_45KG, STANDARD
from cds_service.rules import evaluate
from cds_service.rules.dosing import (
    dose_daily_max,
    dose_single_max,
    dose_unverifiable,
    starting_dose,
    titration_step,
)

WEIGHT = "29463-7"


def test_the_order_facts_mg_per_dose_and_day_and_a_new_start() -> None:
    ctx = rule_context(amifampridine_order(mg=10, per_day=3))
    facts = ctx.facts.order(ctx.orders[0])
    assert (facts.dose.mg_per_dose, facts.dose.mg_per_day) == (10, 30)
    assert facts.new_start and facts.previous is None
    assert facts.age == 56 and facts.band.row.name == STANDARD
    assert ctx.facts.concurrent_amifampridine == ctx.orders


def test_a_child_under_45_kg_gets_the_child_row_with_why() -> None:
    ctx = rule_context(
        amifampridine_order(),
        patient_resource=patient("2016-01-01"),
        weight=[observation(WEIGHT, 30, "kg", day="2026-11-01")],
    )
    band = ctx.facts.order(ctx.orders[0]).band
    assert band.row.name == CHILD_UNDER_45KG and band.child and band.weight_age_days == 21
    assert band.describe() == "child of 10 years, weight 30.0 kg on 2026-11-01"


def test_a_single_dose_above_20_mg_is_split_when_the_patient_already_takes_that_day() -> None:
    current = current_amifampridine(mg=30, per_day=3)  # the same 90 mg/day: no titration step
    draft = amifampridine_order(mg=30, per_day=3) | {
        "priorPrescription": {"reference": "MedicationRequest/active-amf"}
    }
    ctx = rule_context(draft, medications=[current])
    [finding] = dose_single_max(ctx)
    assert finding.params["cap"] == "20" and finding.params["mg_per_dose"] == "30"
    assert finding.suggestions == ()  # the rule only finds; the one dose card carries the fix
    assert dose_daily_max(ctx) == []
    [card] = evaluate(ctx).findings
    # 90 mg/day in doses of at most 20 mg: the most a day that fits in 3 to 5 whole 5 mg steps.
    assert card.topics == ("dose-single-max",)
    assert [s.label for s in card.suggestions] == ["Reduce to 20 mg four times a day (80 mg/day)"]


def test_a_new_start_above_both_caps_gets_one_card_whose_fix_is_in_the_initial_range() -> None:
    ctx = rule_context(amifampridine_order(mg=20, per_day=6))  # 120 mg/day, a new start
    [finding] = dose_daily_max(ctx)
    assert finding.params["cap"] == "100"
    [card] = evaluate(ctx).findings
    assert card.topics == ("dose-daily-max", "starting-dose")
    # The order's own six doses a day kept, each lowered so that the day is within the initial range.
    assert [s.label for s in card.suggestions] == ["Reduce to 5 mg 6 times a day (30 mg/day)"]


def test_a_new_start_above_the_initial_range_gets_the_starting_dose_card() -> None:
    ctx = rule_context(amifampridine_order(mg=15, per_day=3))  # 45 mg/day, initial range 15-30
    [finding] = starting_dose(ctx)
    assert finding.params["initial_high"] == "30"
    [card] = evaluate(ctx).findings
    assert [s.label for s in card.suggestions] == [
        "Start within the initial range: 10 mg three times a day (30 mg/day)"
    ]


def test_a_lowest_start_card_speaks_for_the_starting_dose() -> None:
    ctx = rule_context(amifampridine_order(mg=15, per_day=3), renal=[observation("2164-2", 50, "mL/min")])
    assert starting_dose(ctx) == []
    assert ctx.facts.order(ctx.orders[0]).lowest_start_reasons == ["renal impairment"]


def test_a_rise_of_more_than_5_mg_a_day_is_a_titration_step() -> None:
    current = current_amifampridine(mg=5, per_day=3)  # 15 mg/day
    ctx = rule_context(amifampridine_order(mg=10, per_day=3), medications=[current])  # 30 mg/day
    facts = ctx.facts.order(ctx.orders[0])
    assert not facts.new_start and facts.previous is not None
    assert facts.previous.reference == "MedicationRequest/active-amf"
    [finding] = titration_step(ctx)
    assert (finding.params["rise"], finding.params["target"]) == ("15", "20")
    assert starting_dose(ctx) == []


def test_a_previous_dose_that_cannot_be_read_is_said_on_the_card() -> None:
    current = current_amifampridine()
    del current["dosageInstruction"]
    ctx = rule_context(amifampridine_order(), medications=[current])
    [finding] = titration_step(ctx)
    assert finding.variant == "previous-dose-unknown" and finding.params["why"]


def test_an_order_without_a_dose_is_unverifiable() -> None:
    order = amifampridine_order()
    del order["dosageInstruction"]
    ctx = rule_context(order)
    [finding] = dose_unverifiable(ctx)
    assert finding.params["max_single"] == "20" and finding.params["max_daily"] == "100"
    assert dose_single_max(ctx) == dose_daily_max(ctx) == starting_dose(ctx) == []
