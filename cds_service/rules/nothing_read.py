"""When nothing of the patient's record could be read, the data-unavailable card leads with what was not
checked, in clinical words, contraindications first (issue 17, item 1).

A service that answers 412 here is shown as "All clear" by most EHRs and by the CDS Hooks sandbox; the
pipeline answers with this card instead (``CDS_NO_DATA_STATUS``). Its wording is the ``nothing-read``
variants of ``cards/topics/data-unavailable.yaml``; this module only picks the variant and the words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from cds_service.data_keys import PREFETCH_KEYS
from cds_service.knowledge.classify import AMIFAMPRIDINE
from cds_service.rules.base import Finding, RuleContext, RuleSpec, is_contraindication, named_check

NOTHING_READ_CONTRAINDICATION = "nothing-read-contraindication"  # critical: a contraindication unchecked
# Another drug in question (an interacting one): whether the patient takes amifampridine is what is unknown.
NOTHING_READ_CO_DRUG = "nothing-read-co-drug"
VARIANTS = (NOTHING_READ_CONTRAINDICATION, NOTHING_READ_CO_DRUG)  # the engine's own, in data-unavailable.yaml


def nothing_read(ctx: RuleContext) -> bool:
    return set(ctx.record.unavailable) >= set(PREFETCH_KEYS)


def lead_with_unchecked(ctx: RuleContext, finding: Finding, not_run: Sequence[RuleSpec]) -> Finding:
    """``finding`` (data-unavailable) as the nothing-read variant when no data could be read, else as is.

    ``not_run``: every rule that did not run, in rule order. The contraindications lead, in plain words
    (the summary says what they are); the full list names them as such.
    """
    if not nothing_read(ctx):
        return finding
    if finding.order is None or not finding.order.is_(AMIFAMPRIDINE):
        return replace(finding, variant=NOTHING_READ_CO_DRUG)
    checks = list(dict.fromkeys(named_check(ctx.knowledge, spec) for spec in not_run))
    contraindications = list(
        dict.fromkeys(spec.check for spec in not_run if is_contraindication(ctx.knowledge, spec.topics[0]))
    )
    if not contraindications:  # a site whose rules leave the contraindications out: the general card
        return finding
    rest = [spec for spec in not_run if not is_contraindication(ctx.knowledge, spec.topics[0])]
    rest_count = len(dict.fromkeys(spec.check for spec in rest))
    return replace(
        finding,
        variant=NOTHING_READ_CONTRAINDICATION,
        params={
            **finding.params,
            "lead": ", ".join(contraindications),
            "more": f" and {rest_count} other check{'s' if rest_count != 1 else ''}" if rest_count else "",
            "checks": "; ".join(checks),
        },
    )
