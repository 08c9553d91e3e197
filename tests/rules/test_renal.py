"""Renal status and the renal-impairment rule, from FHIR JSON with no Flask and no database."""

from __future__ import annotations

from datetime import date

import pytest
from helpers.builders import amifampridine_order, current_amifampridine, observation, rule_context

from cds_service.facts import ESRD, IMPAIRED, NORMAL
from cds_service.facts.renal import COCKCROFT_GAULT, EGFR, MEASURED
from cds_service.rules import NOT_FIRED, NOT_RUN, evaluate
from cds_service.rules.renal import renal_impairment

CLEARANCE, CREATININE, EGFR_CODE, WEIGHT = "2164-2", "2160-0", "62238-1", "29463-7"


def test_a_measured_clearance_of_50_is_impairment_with_the_lowest_start_suggested() -> None:
    ctx = rule_context(amifampridine_order(mg=10, per_day=3), renal=[observation(CLEARANCE, 50, "mL/min")])
    status = ctx.facts.order(ctx.orders[0]).renal
    assert (status.level, status.crcl, status.measure) == (IMPAIRED, 50.0, MEASURED)
    assert status.on == date(2026, 11, 1) and "2026-11-01" in status.how
    [finding] = renal_impairment(ctx)
    assert finding.topic == "renal-impairment" and finding.variant is None
    # The advice and the label are the topic's own sentences (cards/topics/renal-impairment.yaml).
    assert finding.params["advice"].startswith("This is a new start at 30 mg/day")
    [suggestion] = finding.suggestions
    assert suggestion.label == "Start at the lowest initial dose: 5 mg three times a day (15 mg/day)"


def test_below_15_is_end_stage_with_no_dose_to_suggest() -> None:
    ctx = rule_context(amifampridine_order(), renal=[observation(CLEARANCE, 10, "mL/min")])
    [finding] = renal_impairment(ctx)
    assert finding.variant == "end-stage" and finding.suggestions == ()
    assert finding.params["advice"].startswith("There is no labelled starting dose to suggest. This order")
    assert ctx.facts.order(ctx.orders[0]).renal.level == ESRD


def test_a_dose_change_is_not_told_to_start_low() -> None:
    ctx = rule_context(
        amifampridine_order(),
        medications=[current_amifampridine()],
        renal=[observation(CLEARANCE, 60, "mL/min")],
    )
    [finding] = renal_impairment(ctx)
    assert "this is a dose change" in finding.params["advice"] and finding.suggestions == ()


def test_cockcroft_gault_from_serum_creatinine_with_age_weight_and_sex() -> None:
    # Female, 56 on 2026-11-22, 70 kg, creatinine 1.0 mg/dL: (140 - 56) x 70 / 72 x 0.85 = 69.4 mL/min.
    ctx = rule_context(
        amifampridine_order(),
        renal=[observation(CREATININE, 1.0, "mg/dL")],
        weight=[observation(WEIGHT, 70, "kg")],
    )
    status = ctx.facts.order(ctx.orders[0]).renal
    assert status.level == IMPAIRED and status.crcl == pytest.approx(84 * 70 / 72 * 0.85)
    assert status.measure == COCKCROFT_GAULT
    assert "Cockcroft-Gault" in status.how


def test_a_newer_result_outranks_an_older_measured_clearance() -> None:
    ctx = rule_context(
        amifampridine_order(),
        renal=[
            observation(CLEARANCE, 40, "mL/min", day="2026-01-01"),
            observation(EGFR_CODE, 95, "mL/min/{1.73_m2}", day="2026-11-01"),
        ],
    )
    status = ctx.facts.order(ctx.orders[0]).renal
    assert (status.level, status.crcl, status.measure) == (NORMAL, 95, EGFR)
    assert renal_impairment(ctx) == []


def test_renal_status_is_computed_once_per_order_date() -> None:
    ctx = rule_context(amifampridine_order(), renal=[observation(CLEARANCE, 50, "mL/min")])
    facts = ctx.facts.order(ctx.orders[0])
    assert facts.renal is ctx.facts.renal_on(facts.date)


def test_without_renal_results_the_rule_does_not_run_and_says_so() -> None:
    ctx = rule_context(amifampridine_order(), unavailable={"renal": "the FHIR server timed out"})
    results = evaluate(ctx)
    [renal] = [r for r in results.rules if r.rule.name == "renal-impairment"]
    assert renal.status == NOT_RUN and renal.missing == ("renal",) and renal.findings == ()
    [unavailable] = [f for f in results.findings if f.topic == "data-unavailable"]
    assert "renal impairment" in unavailable.params["checks"]


def test_a_normal_clearance_does_not_fire() -> None:
    ctx = rule_context(amifampridine_order(), renal=[observation(CLEARANCE, 100, "mL/min")])
    [renal] = [r for r in evaluate(ctx).rules if r.rule.name == "renal-impairment"]
    assert renal.status == NOT_FIRED and renal.notes  # the explain notes say what was read
