"""What every rule receives, returns and declares.

A rule is a pure function ``(RuleContext) -> list[Finding]``: no I/O, no Flask, no HTTP. It reads the
call's facts (``ctx.facts``, ``cds_service.facts``), never another rule. A finding names its card topic
and the values its texts need; ``cds_service.cards`` turns it into a CDS Hooks card with the texts from
``cards/topics``.

Each rule is declared on its function with ``@rule``: its topic(s), the prefetch keys it reads, the value
sets and tables of ``cards/`` it uses, and its check in words for the data-unavailable card. The loader
checks at start that everything declared is there (``cds_service.knowledge.requirements``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Any

from cds_service.facts import Facts, Options
from cds_service.knowledge.loader import Knowledge
from cds_service.record import Order, PatientRecord

# A topic whose card cites the label's section 4 (Contraindications) is a contraindication check: the
# data-unavailable cards name such checks as contraindications and list them first.
CONTRAINDICATION_SECTION = "4"
CONTRAINDICATION_MARK = " (contraindication)"


def is_contraindication(knowledge: Knowledge, topic: str) -> bool:
    definition = knowledge.topics.get(topic)
    return definition is not None and definition.section == CONTRAINDICATION_SECTION


def named_check(knowledge: Knowledge, spec: RuleSpec) -> str:
    """A rule's check in the words of a data-unavailable card: a contraindication is named as one."""
    mark = CONTRAINDICATION_MARK if is_contraindication(knowledge, spec.topics[0]) else ""
    return f"{spec.check}{mark}"


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
    # Further problem topics this card speaks for (one card per problem per order, issue 17): ``covers``
    # are their codes, ``also`` the findings merged into it, whose summaries the card lists.
    covers: tuple[str, ...] = ()
    also: tuple[Finding, ...] = ()

    @property
    def topics(self) -> tuple[str, ...]:
        """Every problem topic the card covers, its own first (the ``amifampridine-cds.topics`` key)."""
        return (self.topic, *dict.fromkeys(t for t in self.covers if t != self.topic))


@dataclass
class RuleContext:
    """The inputs of one evaluation. ``notes`` collects plain-language notes for ``--explain``."""

    record: PatientRecord
    orders: Sequence[Order]  # the orders in question (order-select: the selections)
    drafts: Sequence[Order]  # every draft order of the call, in question or not
    knowledge: Knowledge
    today: date
    options: Options = field(default_factory=Options)
    notes: list[tuple[str, str]] = field(default_factory=list)

    @cached_property
    def facts(self) -> Facts:
        """The call's facts, each computed when a rule first reads it."""
        return Facts(
            record=self.record,
            orders=self.orders,
            drafts=self.drafts,
            knowledge=self.knowledge,
            today=self.today,
            options=self.options,
            notes=self.notes,
        )

    def note(self, rule: str, text: str) -> None:
        self.notes.append((rule, text))

    def concerns_amifampridine(self) -> bool:
        return self.facts.concerns_amifampridine()


Rule = Callable[[RuleContext], list[Finding]]


@dataclass(frozen=True)
class RuleSpec:
    """A rule as declared on its function (``@rule``)."""

    name: str  # the rule's name (--explain, notes): its topic unless declared otherwise
    topics: tuple[str, ...]  # every card topic its findings may carry; the first is its own
    check: str  # what the check is, in the words of a data-unavailable card
    reads: tuple[str, ...]  # prefetch keys (cds_service.data_keys.PREFETCH_KEYS) it reads
    valuesets: tuple[str, ...]  # cards/valuesets/<name>.valueset.json it uses
    tables: tuple[str, ...]  # cards/<name>.yaml tables it uses
    run: Rule
    # What it reads from its topic's definition (cards/topics/<name>.yaml) besides the main texts.
    variants: tuple[str, ...] = ()
    sentences: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()  # suggestion labels

    @property
    def topic(self) -> str:
        """The topic whose definition holds the variants, sentences and labels the rule declares."""
        return self.topics[0]


REGISTRY: list[RuleSpec] = []  # in declaration order (rules/__init__.py imports the modules in order)


def rule(
    topic: str,
    *,
    check: str,
    name: str | None = None,
    reads: Sequence[str] = (),
    valuesets: Sequence[str] = (),
    tables: Sequence[str] = (),
    also: Sequence[str] = (),
    variants: Sequence[str] = (),
    sentences: Sequence[str] = (),
    suggestions: Sequence[str] = (),
) -> Callable[[Rule], Rule]:
    """Declare a rule: ``topic`` (and ``also``, further topics it may produce), the prefetch keys it
    ``reads`` (it does not run without them), the value sets and tables it uses, its ``check``, and the
    ``variants``, ``sentences`` and ``suggestions`` (labels) of its topic's definition it uses. ``name``
    (default: the topic) names a rule whose topic another rule or the engine also produces."""

    def register(run: Rule) -> Rule:
        REGISTRY.append(
            RuleSpec(
                name=name or topic,
                topics=(topic, *also),
                check=check,
                reads=tuple(reads),
                valuesets=tuple(valuesets),
                tables=tuple(tables),
                run=run,
                variants=tuple(variants),
                sentences=tuple(sentences),
                suggestions=tuple(suggestions),
            )
        )
        return run

    return register
