"""Start at the lowest initial dose: what renal impairment, hepatic impairment and NAT2 poor metabolism
have in common (label §2.2-§2.4).

Each of those cards says whether this order is a new start above the lowest initial dose and, when it
is, suggests that dose. The starting-dose card stays silent when one of them applies (no double warning).
The sentences are the topic's own (``cards/topics/<topic>.yaml``, ``sentences:`` and ``suggestions:``).
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.facts import fmt_mg
from cds_service.record import Order
from cds_service.rules.base import RuleContext, Suggestion
from cds_service.rules.suggest import regimen_words, update_suggestion

# What a topic that carries the lowest start declares (``@rule(sentences=..., suggestions=...)``).
SENTENCES = ("dose-change", "new-start-dose-unknown", "new-start-above-lowest", "new-start-at-lowest")
SUGGESTIONS = ("lowest-start",)


@dataclass(frozen=True)
class StartAdvice:
    sentence: str  # what the card says about this order's dose
    suggestions: tuple[Suggestion, ...]


def lowest_start_advice(ctx: RuleContext, order: Order, topic: str) -> StartAdvice:
    """Whether this order should start lower, in the words of ``topic``, with an update suggestion when
    it should."""
    words = ctx.knowledge.topic(topic)
    facts = ctx.facts.order(order)
    row = facts.band.row
    regimen = row.lowest_start
    dose = facts.dose
    values = {
        "lowest": fmt_mg(row.initial_low_mg),
        "regimen": regimen_words(regimen),
        "row": row.words,
        "mg_per_day": fmt_mg(dose.mg_per_day or 0),
        "arithmetic": dose.arithmetic,
    }
    if not facts.new_start:
        return StartAdvice(words.say("dose-change", **values), ())
    update = (update_suggestion(ctx, order, regimen, words.label("lowest-start", **values)),)
    if not dose.ok:
        return StartAdvice(words.say("new-start-dose-unknown", **values), update)
    if (dose.mg_per_day or 0) > row.initial_low_mg + 1e-9:
        return StartAdvice(words.say("new-start-above-lowest", **values), update)
    return StartAdvice(words.say("new-start-at-lowest", **values), ())
