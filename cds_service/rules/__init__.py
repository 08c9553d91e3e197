"""The amifampridine safety rules and the engine that runs them.

Each rule declares the prefetch keys it reads. When one of those could not be had, the rule does not
run and the engine says so in a ``data-unavailable`` card: a safety service never goes quiet about a
check it did not perform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cds_service.data_keys import PREFETCH_KEYS
from cds_service.rules.base import Finding, Rule, RuleContext
from cds_service.rules.seizure import seizure_history


@dataclass(frozen=True)
class RuleSpec:
    name: str
    check: str  # what the check is, in the words of a data-unavailable card
    needs: tuple[str, ...]  # prefetch keys (cds_service.protocol.services.PREFETCH) the rule reads
    run: Rule


RULES: tuple[RuleSpec, ...] = (
    RuleSpec("seizure-history", "history of seizures", ("conditions",), seizure_history),
)


def evaluate(ctx: RuleContext, rules: Sequence[RuleSpec] = RULES) -> list[Finding]:
    """Run every rule whose data is there; report the others in one data-unavailable finding."""
    findings: list[Finding] = []
    not_run: list[RuleSpec] = []
    for spec in rules:
        missing = [key for key in spec.needs if key in ctx.record.unavailable]
        if missing:
            not_run.append(spec)
            ctx.note(spec.name, f"not run: {', '.join(missing)} unavailable")
            continue
        findings.extend(spec.run(ctx))
    if not_run and _concerns_amifampridine(ctx):
        findings.append(_data_unavailable(ctx, not_run))
    return findings


def _concerns_amifampridine(ctx: RuleContext) -> bool:
    # Without the current medication list we cannot know whether a co-drug meets amifampridine, so
    # any order in question concerns it then.
    return bool(ctx.amifampridine_orders() or ctx.current_amifampridine()) or (
        "medications" in ctx.record.unavailable and bool(ctx.orders)
    )


def _data_unavailable(ctx: RuleContext, not_run: Sequence[RuleSpec]) -> Finding:
    keys = sorted({key for spec in not_run for key in spec.needs if key in ctx.record.unavailable})
    reasons = sorted({ctx.record.unavailable[key] for key in keys})
    subject = ctx.amifampridine_orders() or list(ctx.orders)
    return Finding(
        topic="data-unavailable",
        params={
            "what": "; ".join(PREFETCH_KEYS.get(key, key) for key in keys),
            "why": "; ".join(reasons),
            "checks": ", ".join(dict.fromkeys(spec.check for spec in not_run)),
            "drug": subject[0].name if subject else "this order",
        },
        order=subject[0] if subject else None,
    )


__all__ = ["RULES", "Finding", "RuleContext", "RuleSpec", "evaluate"]
