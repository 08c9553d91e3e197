"""The amifampridine safety rules and the engine that runs them.

Each rule declares the prefetch keys it reads. When one of those could not be had, the rule does not
run and the engine says so in a ``data-unavailable`` card: a safety service never goes quiet about a
check it did not perform.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cds_service.data_keys import PREFETCH_KEYS
from cds_service.rules.age import age_not_established
from cds_service.rules.allergy import aminopyridine_hypersensitivity
from cds_service.rules.base import Finding, Rule, RuleContext
from cds_service.rules.dosing import (
    dose_daily_max,
    dose_single_max,
    dose_unverifiable,
    starting_dose,
    titration_step,
)
from cds_service.rules.hepatic import hepatic_impairment
from cds_service.rules.interactions import aminopyridine_duplicate, cholinergic_drug, seizure_threshold_drug
from cds_service.rules.nat2 import nat2_poor_metabolizer
from cds_service.rules.nothing_read import lead_with_unchecked
from cds_service.rules.renal import renal_impairment
from cds_service.rules.seizure import seizure_history
from cds_service.rules.unidentified import unidentified_medication
from cds_service.rules.weight import weight_needed


@dataclass(frozen=True)
class RuleSpec:
    name: str
    check: str  # what the check is, in the words of a data-unavailable card
    needs: tuple[str, ...]  # prefetch keys (cds_service.protocol.services.PREFETCH) the rule reads
    run: Rule


# Dose rules read the patient and weight when they are there and fall back to the adult row (checking
# only what is certainly too high) when they are not; weight-needed says what that leaves unchecked.
RULES: tuple[RuleSpec, ...] = (
    RuleSpec("seizure-history", "history of seizures", ("conditions",), seizure_history),
    RuleSpec(
        "aminopyridine-hypersensitivity",
        "aminopyridine allergy",
        ("allergies",),
        aminopyridine_hypersensitivity,
    ),
    RuleSpec("age-not-established", "minimum age (6 years)", ("patient",), age_not_established),
    RuleSpec(
        "seizure-threshold-drug",
        "co-medication that lowers the seizure threshold",
        ("medications",),
        seizure_threshold_drug,
    ),
    RuleSpec("cholinergic-drug", "cholinergic co-medication", ("medications",), cholinergic_drug),
    RuleSpec("unidentified-medication", "identity of a co-medication", (), unidentified_medication),
    RuleSpec(
        "aminopyridine-duplicate",
        "duplicate aminopyridine therapy",
        ("medications",),
        aminopyridine_duplicate,
    ),
    RuleSpec("nat2-poor-metabolizer", "NAT2 poor metabolizer status", ("nat2",), nat2_poor_metabolizer),
    RuleSpec("renal-impairment", "renal impairment", ("renal",), renal_impairment),
    RuleSpec("hepatic-impairment", "hepatic impairment", ("conditions",), hepatic_impairment),
    RuleSpec("dose-unverifiable", "dose arithmetic", (), dose_unverifiable),
    RuleSpec("dose-single-max", "maximum single dose", (), dose_single_max),
    RuleSpec("dose-daily-max", "maximum daily dose", (), dose_daily_max),
    RuleSpec("starting-dose", "starting dose of a new start", ("medications",), starting_dose),
    RuleSpec("titration-step", "titration step", ("medications",), titration_step),
    RuleSpec("weight-needed", "weight-based dose caps for children", ("patient", "weight"), weight_needed),
)


def evaluate(ctx: RuleContext, rules: Sequence[RuleSpec] = RULES) -> list[Finding]:
    """Run every rule whose data is there; report the others in one data-unavailable finding.

    Called only when ``ctx.concerns_amifampridine()`` (the pipeline returns earlier otherwise)."""
    findings: list[Finding] = []
    not_run: list[RuleSpec] = []
    for spec in rules:
        missing = [key for key in spec.needs if key in ctx.record.unavailable]
        if missing:
            not_run.append(spec)
            ctx.note(spec.name, f"not run: {', '.join(missing)} unavailable")
            continue
        findings.extend(spec.run(ctx))
    if not_run:
        unchecked = [(spec.name, spec.check) for spec in not_run]
        findings.append(lead_with_unchecked(ctx, _data_unavailable(ctx, not_run), unchecked))
    return findings


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
