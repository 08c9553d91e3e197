"""Every card topic and variant of cards/topics renders from what the rules find in the fixtures: no
placeholder left unfilled, a summary within the spec's limit, the variant's indicator. And the wording
the rules use is all declared and all there; no rule module imports another."""

from __future__ import annotations

import ast
import json
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.builders import amifampridine_order, current_amifampridine, rule_context, shipped_knowledge

from cds_service.cards import MAX_SUMMARY, render_card
from cds_service.data_keys import PREFETCH_KEYS
from cds_service.hooks.services import prefetch_templates
from cds_service.integration.offline import evaluate_request
from cds_service.knowledge.loader import Knowledge
from cds_service.rules import DATA_UNAVAILABLE, RULES, Finding, evaluate
from cds_service.rules.nothing_read import VARIANTS as NOTHING_READ_VARIANTS

ROOT = Path(__file__).resolve().parents[2]


def _fixture_findings(knowledge: Knowledge) -> Iterator[Finding]:
    templates = prefetch_templates(knowledge)
    for path in sorted((ROOT / "fixtures" / "requests").glob("*.json")):
        evaluation = evaluate_request(json.loads(path.read_text(encoding="utf-8")), knowledge, templates)
        yield from evaluation.outcome.findings


def _findings_the_fixtures_lack() -> Iterator[Finding]:
    # titration-step, previous-dose-unknown: the current order's dose cannot be read.
    current = current_amifampridine()
    del current["dosageInstruction"]
    yield from evaluate(rule_context(amifampridine_order(), medications=[current])).findings
    # aminopyridine-duplicate, taken-together: an add-on with no priorPrescription link, above the caps.
    add_on = current_amifampridine(mg=20, per_day=4)
    yield from evaluate(rule_context(amifampridine_order(mg=10, per_day=3), medications=[add_on])).findings
    # data-unavailable, nothing-read-*: none of the record could be read (an amifampridine order, and an
    # interacting drug ordered for a patient whose medications are unknown).
    nothing = dict.fromkeys(PREFETCH_KEYS, "the FHIR server could not be reached")
    for draft in (amifampridine_order(), _sertraline_draft()):
        yield from evaluate(rule_context(draft, unavailable=dict(nothing))).findings


def _sertraline_draft() -> dict:
    body = json.loads((ROOT / "fixtures/requests/reverse-sertraline-draft.json").read_text(encoding="utf-8"))
    return body["context"]["draftOrders"]["entry"][0]["resource"]


@pytest.fixture(scope="module")
def findings() -> dict[tuple[str, str | None], Finding]:
    found: dict[tuple[str, str | None], Finding] = {}
    for finding in [*_fixture_findings(shipped_knowledge()), *_findings_the_fixtures_lack()]:
        found.setdefault((finding.topic, finding.variant), finding)
    return found


def _cases() -> list[tuple[str, str | None]]:
    topics = shipped_knowledge().topics
    return [(topic, variant) for topic in sorted(topics) for variant in [None, *topics[topic].variants]]


def _fields(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


@pytest.mark.parametrize(("topic", "variant"), _cases(), ids=[f"{t}-{v or 'main'}" for t, v in _cases()])
def test_topic_and_variant_render_with_every_placeholder_filled(
    topic: str, variant: str | None, findings: dict[tuple[str, str | None], Finding]
) -> None:
    knowledge = shipped_knowledge()
    assert (topic, variant) in findings, "no fixture (or builder case) gives this topic and variant"
    card = render_card(findings[topic, variant], knowledge)
    texts = knowledge.topic(topic).variant(variant)
    assert card["indicator"] == texts.indicator
    assert card["source"]["topic"]["code"] == topic
    assert 0 < len(card["summary"]) <= MAX_SUMMARY
    for template, rendered in ((texts.summary, card["summary"]), (texts.detail, card["detail"])):
        unfilled = [field for field in _fields(template) if f"[{field}]" in rendered]
        assert not unfilled, rendered
    for suggestion in card.get("suggestions", []):
        assert suggestion["label"] and "{" not in suggestion["label"]


def test_every_sentence_label_and_variant_of_a_topic_is_used_by_a_rule() -> None:
    knowledge = shipped_knowledge()
    declared: dict[tuple[str, str], set[str]] = {}
    for spec in RULES:
        for block in ("sentences", "suggestions", "variants"):
            declared.setdefault((spec.topic, block), set()).update(getattr(spec, block))
    # The engine's own data-unavailable card when nothing could be read (rules/nothing_read.py).
    declared.setdefault((DATA_UNAVAILABLE, "variants"), set()).update(NOTHING_READ_VARIANTS)
    for topic, definition in knowledge.topics.items():
        for block in ("sentences", "suggestions", "variants"):
            assert set(getattr(definition, block)) == declared.get((topic, block), set()), (topic, block)


def test_no_rule_module_imports_another() -> None:
    rules_dir = ROOT / "cds_service" / "rules"
    rule_modules = {spec.run.__module__.rsplit(".", 1)[-1] for spec in RULES}
    assert len(rule_modules) >= 8
    for name in rule_modules:
        tree = ast.parse((rules_dir / f"{name}.py").read_text(encoding="utf-8"))
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "cds_service.rules"
            for alias in node.names
        }
        imported |= {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cds_service.rules.")
        }
        assert not imported & rule_modules, (name, imported & rule_modules)
