"""The amifampridine safety rules and the engine that runs them.

Each rule is declared on its function (``rules.base.rule``) with the prefetch keys it reads. When one of
those could not be had, the rule does not run and the engine says so in a ``data-unavailable`` card: a
safety service never goes quiet about a check it did not perform. ``evaluate`` returns what each rule did
(fired, did not fire, not run, with its findings and notes): ``--explain`` reads that, nothing runs twice.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

from cds_service.data_keys import PREFETCH_KEYS
from cds_service.rules.base import REGISTRY, Finding, RuleContext, RuleSpec, named_check, rule
from cds_service.rules.dose_card import one_dose_card_per_order
from cds_service.rules.nothing_read import lead_with_unchecked

# The rule modules, imported in this order: the order rules run in, and so the order of cards of the
# same indicator and of the checks a data-unavailable card lists.
_MODULES = ("seizure", "allergy", "age", "interactions", "nat2", "renal", "hepatic", "dosing", "weight")
for _module in _MODULES:
    importlib.import_module(f"{__name__}.{_module}")

RULES: tuple[RuleSpec, ...] = tuple(REGISTRY)
DATA_UNAVAILABLE = "data-unavailable"  # the engine's own topic: a check that could not run

FIRED = "fired"
NOT_FIRED = "did not fire"
NOT_RUN = "not run"


@dataclass(frozen=True)
class RuleResult:
    rule: RuleSpec
    status: str  # FIRED | NOT_FIRED | NOT_RUN
    findings: tuple[Finding, ...] = ()
    missing: tuple[str, ...] = ()  # the prefetch keys that kept it from running
    notes: tuple[str, ...] = ()  # what it wrote for --explain


@dataclass(frozen=True)
class Results:
    """What the engine did for one call."""

    rules: tuple[RuleResult, ...]
    # every finding in rule order (the dose problems of an order merged into one, rules/dose_card.py),
    # then the data-unavailable one
    findings: tuple[Finding, ...]


def evaluate(ctx: RuleContext, rules: Sequence[RuleSpec] = RULES) -> Results:
    """Run every rule whose data is there; report the others in one data-unavailable finding.

    Called only when ``ctx.concerns_amifampridine()`` (the pipeline returns earlier otherwise)."""
    ran: list[tuple[RuleSpec, list[Finding], tuple[str, ...]]] = []
    for spec in rules:
        missing = tuple(key for key in spec.reads if key in ctx.record.unavailable)
        if missing:
            ctx.note(spec.name, f"not run: {', '.join(missing)} unavailable")
            ran.append((spec, [], missing))
            continue
        ran.append((spec, spec.run(ctx), ()))
    notes: dict[str, list[str]] = {}
    for name, text in ctx.notes:
        notes.setdefault(name, []).append(text)
    results = tuple(
        RuleResult(
            rule=spec,
            status=NOT_RUN if missing else FIRED if findings else NOT_FIRED,
            findings=tuple(findings),
            missing=missing,
            notes=tuple(notes.get(spec.name, ())),
        )
        for spec, findings, missing in ran
    )
    # One card per problem per order: the dose problems of an order become one card with one fix.
    findings = one_dose_card_per_order(ctx, [finding for result in results for finding in result.findings])
    not_run = [result for result in results if result.status == NOT_RUN]
    if not_run:
        unchecked = [result.rule for result in not_run]
        findings.append(lead_with_unchecked(ctx, _data_unavailable(ctx, not_run), unchecked))
    return Results(rules=results, findings=tuple(findings))


def _data_unavailable(ctx: RuleContext, not_run: Sequence[RuleResult]) -> Finding:
    keys = sorted({key for result in not_run for key in result.missing})
    reasons = sorted({ctx.record.unavailable[key] for key in keys})
    subject = ctx.facts.amifampridine_orders or list(ctx.orders)
    return Finding(
        topic=DATA_UNAVAILABLE,
        params={
            "what": "; ".join(PREFETCH_KEYS.get(key, key) for key in keys),
            "why": "; ".join(reasons),
            "checks": ", ".join(dict.fromkeys(named_check(ctx.knowledge, result.rule) for result in not_run)),
            "drug": subject[0].name if subject else "this order",
        },
        order=subject[0] if subject else None,
    )


__all__ = [
    "DATA_UNAVAILABLE",
    "RULES",
    "Finding",
    "Results",
    "RuleContext",
    "RuleResult",
    "RuleSpec",
    "evaluate",
    "rule",
]
