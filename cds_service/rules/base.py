"""What every rule receives and returns.

A rule is a pure function ``(RuleContext) -> list[Finding]``: no I/O, no Flask, no HTTP. A finding names
its card topic and the values its texts need; ``cds_service.cards`` turns it into a CDS Hooks card with
the texts from ``cards/topics``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_service.knowledge.classify import AMIFAMPRIDINE
from cds_service.knowledge.loader import Knowledge
from cds_service.record import Order, PatientRecord


@dataclass(frozen=True)
class Action:
    """A CDS Hooks action: ``update`` a draft order to a safer one, or ``delete`` a draft co-prescription."""

    type: str  # create | update | delete
    description: str
    resource: Mapping[str, Any] | None = None
    resource_id: str | None = None


@dataclass(frozen=True)
class Suggestion:
    label: str
    actions: tuple[Action, ...]
    recommended: bool = False


@dataclass(frozen=True)
class Finding:
    topic: str
    params: Mapping[str, Any]  # values for the topic's summary/detail templates
    order: Order | None = None  # the order the finding is about, when there is one
    variant: str | None = None  # a named variant of the topic (e.g. "febrile"), else the main texts
    suggestions: tuple[Suggestion, ...] = ()


@dataclass(frozen=True)
class Options:
    """Site choices that change rule outcomes (from configuration)."""

    weight_max_age_days: int = 90
    dose_caps_version: str = "2024-05"
    dose_max_lines: int = 20  # CDS_DOSE_MAX_LINES
    dose_text_max_chars: int = 1000  # CDS_DOSE_TEXT_MAX_CHARS
    dose_order_text_max_chars: int = 5000  # CDS_DOSE_TEXT_MAX_CHARS_PER_ORDER


@dataclass
class RuleContext:
    """The inputs of one evaluation. ``explain`` collects plain-language notes for ``--explain``."""

    record: PatientRecord
    orders: Sequence[Order]  # the orders in question (order-select: the selections)
    drafts: Sequence[Order]  # every draft order of the call, in question or not
    knowledge: Knowledge
    today: date
    options: Options = field(default_factory=Options)
    notes: list[tuple[str, str]] = field(default_factory=list)
    # Readings several rules share (dose of an order, renal status, ...), computed once per call.
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    def note(self, rule: str, text: str) -> None:
        self.notes.append((rule, text))

    def amifampridine_orders(self) -> list[Order]:
        """The amifampridine orders in question."""
        return [order for order in self.orders if order.is_(AMIFAMPRIDINE)]

    def current_amifampridine(self) -> list[Order]:
        return [order for order in self.record.current_orders if order.is_(AMIFAMPRIDINE)]

    def concerns_amifampridine(self) -> bool:
        """Amifampridine is ordered or current — or may be: without the current medication list we
        cannot know whether a co-drug in question meets it."""
        return bool(
            self.amifampridine_orders()
            or self.current_amifampridine()
            or ("medications" in self.record.unavailable and self.orders)
        )

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per call for ``key``; later rules reuse the answer."""
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]


Rule = Callable[[RuleContext], list[Finding]]
