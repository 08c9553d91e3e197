"""Start at the lowest initial dose: what renal impairment, hepatic impairment and NAT2 poor metabolism
have in common (label §2.2-§2.4).

Each of those cards says whether this order is a new start above the lowest initial dose and, when it
is, suggests that dose. The starting-dose card stays silent when one of them applies (no double warning).
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.facts import fmt_mg
from cds_service.record import Order
from cds_service.rules.base import RuleContext, Suggestion
from cds_service.rules.suggest import regimen_words, update_suggestion


@dataclass(frozen=True)
class StartAdvice:
    sentence: str  # what the card says about this order's dose
    suggestions: tuple[Suggestion, ...]


def lowest_start_advice(ctx: RuleContext, order: Order, why: str, *, suggest: bool = True) -> StartAdvice:
    """Whether this order should start lower, in words, with an update suggestion when it should."""
    facts = ctx.facts.order(order)
    row = facts.band.row
    regimen = row.lowest_start
    target = f"{fmt_mg(row.initial_low_mg)} mg/day, e.g. {regimen_words(regimen)}"
    dose = facts.dose
    label = f"Start at the lowest initial dose: {regimen_words(regimen)}"
    if not facts.new_start:
        return StartAdvice(
            f"The patient already takes amifampridine, so this is a dose change: titrate slowly and watch "
            f"for adverse reactions ({why}).",
            (),
        )
    if not dose.ok:
        sentence = (
            f"The dose of this order could not be worked out; for a new start the label asks for {target}."
        )
        return StartAdvice(sentence, (update_suggestion(ctx, order, regimen, label),) if suggest else ())
    ordered = f"{fmt_mg(dose.mg_per_day or 0)} mg/day ({dose.arithmetic})"
    if (dose.mg_per_day or 0) > row.initial_low_mg + 1e-9:
        sentence = (
            f"This is a new start at {ordered}, above the lowest initial dose. Start at {target} "
            f"for {row.words}."
        )
        return StartAdvice(sentence, (update_suggestion(ctx, order, regimen, label),) if suggest else ())
    return StartAdvice(f"This new start at {ordered} is already at or below the lowest initial dose.", ())
