"""The engine: what each rule did (fired, did not fire, not run), with its findings and notes, once."""

from __future__ import annotations

from helpers.builders import amifampridine_order, epilepsy, rule_context

from cds_service.rules import FIRED, NOT_FIRED, NOT_RUN, Finding, RuleContext, RuleSpec, evaluate


def _spec(name: str, topic: str, reads: tuple[str, ...] = ()) -> tuple[RuleSpec, list[int]]:
    calls: list[int] = []

    def run(ctx: RuleContext) -> list[Finding]:
        calls.append(1)
        ctx.note(name, "looked")
        return [Finding(topic, {"drug": "x"})] if name.startswith("fires") else []

    return RuleSpec(name, (topic,), "a check", reads, (), (), run), calls


def test_each_rule_runs_once_and_its_result_says_what_it_did() -> None:
    fires, fires_calls = _spec("fires-named-apart", "data-unavailable")
    quiet, quiet_calls = _spec("quiet", "seizure-history")
    blocked, blocked_calls = _spec("blocked", "renal-impairment", reads=("renal",))
    ctx = rule_context(amifampridine_order(), unavailable={"renal": "timed out"})
    results = evaluate(ctx, [fires, quiet, blocked])
    assert [(r.rule.name, r.status) for r in results.rules] == [
        ("fires-named-apart", FIRED),
        ("quiet", NOT_FIRED),
        ("blocked", NOT_RUN),
    ]
    assert (fires_calls, quiet_calls, blocked_calls) == ([1], [1], [])
    assert results.rules[0].notes == ("looked",) and results.rules[2].missing == ("renal",)
    # The findings in rule order, then one data-unavailable finding for the rules that did not run.
    assert [f.topic for f in results.findings] == ["data-unavailable", "data-unavailable"]
    assert results.findings[-1].params["why"] == "timed out"


def test_the_shipped_rules_report_each_finding_under_the_rule_that_made_it() -> None:
    results = evaluate(rule_context(amifampridine_order(), conditions=[epilepsy()]))
    fired = {r.rule.name: [f.topic for f in r.findings] for r in results.rules if r.status == FIRED}
    assert fired == {"seizure-history": ["seizure-history"]}
    assert [f.topic for f in results.findings] == ["seizure-history"]
