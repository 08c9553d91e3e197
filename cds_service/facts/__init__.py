"""What the rules read about one hook call, computed once and only when asked for.

Data flows one way: protocol -> patient record -> facts -> rules -> cards. A fact is computed the first
time a rule reads it and kept for the rest of the call, so a reading several rules share (the dose of an
order, the renal status, the NAT2 phenotype) is worked out once, and a call that concerns no amifampridine
order pays for none of them (the pipeline returns before building any).

- per call: the amifampridine orders (in question, current, drafted), the dose table, the latest body
  weight, the liver conditions, the NAT2 status, the renal status on a day;
- per amifampridine order (``Facts.order``): the order date, the age on that date, the dose-table row
  with why, mg per dose and per day, the previous order or a new start, the renal status on its date.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from typing import Any

from cds_service.dose import DoseResult, compute_dose
from cds_service.facts.body import Band, Weight, band, weight_of
from cds_service.facts.format import fmt_mg
from cds_service.facts.nat2 import POOR, Nat2Result, nat2_status
from cds_service.facts.renal import ESRD, IMPAIRED, NORMAL, RenalStatus, renal_status
from cds_service.knowledge.classify import AMIFAMPRIDINE
from cds_service.knowledge.dose_table import DoseTable, dose_table
from cds_service.knowledge.loader import Knowledge
from cds_service.record import Order, PatientRecord, current_condition, parse_date, reference_to


@dataclass(frozen=True)
class Options:
    """Site choices that change rule outcomes (from configuration)."""

    weight_max_age_days: int = 90
    renal_max_age_days: int = 365  # CDS_RENAL_MAX_AGE_DAYS: an older renal result is not judged on
    dose_caps_version: str = "2024-05"
    dose_max_lines: int = 20  # CDS_DOSE_MAX_LINES
    dose_text_max_chars: int = 1000  # CDS_DOSE_TEXT_MAX_CHARS
    dose_order_text_max_chars: int = 5000  # CDS_DOSE_TEXT_MAX_CHARS_PER_ORDER


Note = Callable[[str, str], None]


class Facts:
    """The facts of one call; each is computed on first use (``cached_property``) and then kept."""

    def __init__(
        self,
        *,
        record: PatientRecord,
        orders: Sequence[Order],
        drafts: Sequence[Order],
        knowledge: Knowledge,
        today: date,
        options: Options,
        notes: list[tuple[str, str]],
    ) -> None:
        self.record = record
        self.orders = orders  # the orders in question (order-select: the selections)
        self.drafts = drafts  # every draft order of the call, in question or not
        self.knowledge = knowledge
        self.today = today
        self.options = options
        self.notes = notes  # (rule, text) for --explain; a fact's notes are filed under its rule
        self._per_order: dict[int, OrderFacts] = {}
        self._renal: dict[date, RenalStatus] = {}

    def note(self, rule: str, text: str) -> None:
        self.notes.append((rule, text))

    # --- the amifampridine orders ------------------------------------------------------------------
    @cached_property
    def amifampridine_orders(self) -> list[Order]:
        """The amifampridine orders in question."""
        return [order for order in self.orders if order.is_(AMIFAMPRIDINE)]

    @cached_property
    def current_amifampridine(self) -> list[Order]:
        """The patient's current (active) amifampridine orders, drafts of this call excluded."""
        return [order for order in self.record.current_orders if order.is_(AMIFAMPRIDINE)]

    @cached_property
    def drafted_amifampridine(self) -> list[Order]:
        return [order for order in self.drafts if order.is_(AMIFAMPRIDINE)]

    @cached_property
    def concurrent_amifampridine(self) -> list[Order]:
        """Every amifampridine order of the patient: current, then drafted in this session."""
        return [*self.current_amifampridine, *self.drafted_amifampridine]

    def concerns_amifampridine(self) -> bool:
        """Amifampridine is ordered, current or drafted in this session (at order-select a co-drug may be
        selected next to an amifampridine draft that is not) — or may be: without the current medication
        list we cannot know whether a co-drug in question meets it."""
        return bool(
            self.amifampridine_orders
            or self.current_amifampridine
            or self.drafted_amifampridine
            or ("medications" in self.record.unavailable and self.orders)
        )

    # --- the patient --------------------------------------------------------------------------------
    @cached_property
    def table(self) -> DoseTable:
        return dose_table(self.knowledge, self.options.dose_caps_version)

    @cached_property
    def weight(self) -> Weight | None:
        """The most recent body weight with a unit we can convert (kg, g, [lb_av])."""
        matcher = self.knowledge.valueset("body-weight-observations")
        for observation in self.record.observations_in(matcher):
            weight = weight_of(observation)
            if weight is not None:
                return weight
        return None

    @cached_property
    def liver_conditions(self) -> list[Mapping[str, Any]]:
        """Current liver conditions from the list (cited: checked against FHIR R4 for --explain)."""
        if "conditions" in self.record.unavailable:
            return []
        liver = self.knowledge.valueset("liver-conditions")
        return self.record.cited(c for c in self.record.conditions_in(liver) if current_condition(c))

    @cached_property
    def nat2(self) -> Nat2Result | None:
        """The newest NAT2 result that states a phenotype."""
        return nat2_status(self.record, self.knowledge)

    def renal_on(self, on: date) -> RenalStatus:
        if on not in self._renal:
            self._renal[on] = renal_status(self, on)
        return self._renal[on]

    def order(self, order: Order) -> OrderFacts:
        key = id(order)
        if key not in self._per_order:
            self._per_order[key] = OrderFacts(self, order)
        return self._per_order[key]


class OrderFacts:
    """The facts of one amifampridine order."""

    def __init__(self, facts: Facts, order: Order) -> None:
        self.facts = facts
        self.order = order

    @cached_property
    def date(self) -> date:
        """The day the order is written for: authoredOn (dateWritten in DSTU2), else today."""
        resource = self.order.resource
        return (
            parse_date(resource.get("authoredOn"))
            or parse_date(resource.get("dateWritten"))
            or self.facts.today
        )

    @cached_property
    def age(self) -> int | None:
        """The patient's age in whole years on the order date (None without a birth date)."""
        return self.facts.record.age_on(self.date)

    @cached_property
    def band(self) -> Band:
        """The dose-table row for this patient on this order's date, and why."""
        facts = self.facts
        return band(facts.table, self.date, self.age, facts.weight, facts.options.weight_max_age_days)

    @cached_property
    def dose(self) -> DoseResult:
        """mg per dose and per day, with the arithmetic in words (or why they cannot be worked out)."""
        options = self.facts.options
        return compute_dose(
            self.order.resource,
            medication=self.order.facts.medication,
            max_lines=options.dose_max_lines,
            max_text_chars=options.dose_text_max_chars,
            max_order_chars=options.dose_order_text_max_chars,
        )

    @cached_property
    def previous(self) -> Order | None:
        """The amifampridine order this one changes: its priorPrescription, else the newest current one."""
        current = self.facts.current_amifampridine
        prior = reference_to(self.order.resource.get("priorPrescription"))
        if prior:
            for candidate in current:
                if candidate.reference == prior:
                    return candidate
        if not current:
            return None
        return max(current, key=lambda o: parse_date(o.resource.get("authoredOn")) or date.min)

    @property
    def new_start(self) -> bool:
        """No current amifampridine order: the patient starts, or restarts, the drug now.

        A priorPrescription naming an order that is no longer current (stopped, completed) is a restart:
        judged as a start, so that the starting dose is checked rather than nothing at all."""
        return not self.facts.current_amifampridine

    @cached_property
    def renal(self) -> RenalStatus:
        return self.facts.renal_on(self.date)

    @cached_property
    def lowest_start_reasons(self) -> list[str]:
        """The conditions whose own cards carry the lowest initial dose for this order."""
        reasons = []
        if self.renal.level in {ESRD, IMPAIRED}:
            reasons.append("renal impairment")
        if self.facts.liver_conditions:
            reasons.append("hepatic impairment")
        nat2 = self.facts.nat2
        if nat2 is not None and nat2.phenotype == POOR:
            reasons.append("NAT2 poor metabolizer")
        return reasons


__all__ = [
    "ESRD",
    "IMPAIRED",
    "NORMAL",
    "POOR",
    "Band",
    "Facts",
    "Nat2Result",
    "Note",
    "Options",
    "OrderFacts",
    "RenalStatus",
    "Weight",
    "fmt_mg",
]
