"""Override analytics: per card topic and indicator, how often cards were accepted or overridden, and why.

Counts are of distinct cards, once per order: order-select re-runs of the same order (and its order-sign)
give new card uuids but are one card shown; a card with feedback posted twice is one card with feedback,
and one accepted, then dismissed (overridden) counts as accepted. Cards not shown at order-sign because
the clinician had answered them at order-select are ``suppressedAtSign``, not shown. An override reason
sent as a bare code is named with its display from ``cards/`` (``ReasonDisplays``).
``overrideRate`` = overridden / feedbackReceived (null when no feedback).
``since`` filters on when the card was issued; feedback for cards this service never issued is counted
apart (``unknownCardFeedback``, filtered on when it was received). A ``ReportScope`` limits every count
to one client (issuer and tenant): its cards, and the feedback it sent about them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Engine, and_, case, distinct, func, select

from cds_service.storage.models import Feedback, IssuedCard

if TYPE_CHECKING:
    from cds_service.knowledge.loader import Knowledge

TOP_REASONS = 3
NO_REASON = "(no reason given)"
# The stored client columns are clipped to these lengths (storage.store); compare like with like.
_ISS_LENGTH, _TENANT_LENGTH = 512, 256


@dataclass(frozen=True)
class ReportScope:
    """One client's share of the audit trail: the cards issued to it and the feedback it sent."""

    iss: str
    tenant: str | None = None

    def matches(self, model: type[IssuedCard] | type[Feedback]) -> list[ColumnElement[bool]]:
        tenant = model.client_tenant
        return [
            model.client_iss == self.iss[:_ISS_LENGTH],
            tenant.is_(None) if self.tenant is None else tenant == self.tenant[:_TENANT_LENGTH],
        ]

    def describe(self) -> dict[str, Any]:
        return {"client": self.iss, "tenant": self.tenant}


def build_report(
    engine: Engine,
    *,
    since: datetime | None,
    rule_version: str,
    scope: ReportScope | None = None,
    reason_displays: ReasonDisplays | None = None,
) -> dict[str, Any]:
    """The report over every client (``scope`` None: the operator's view) or over one client's data.

    ``reason_displays``: the displays of the override reasons in ``cards/``, for feedback that sent a code
    without its display.
    """
    card_filter = [IssuedCard.issued_at >= since] if since else []
    feedback_scope: list[ColumnElement[bool]] = []
    if scope is not None:
        card_filter += scope.matches(IssuedCard)
        feedback_scope = scope.matches(Feedback)
    joined = and_(Feedback.card_uuid == IssuedCard.card_uuid, Feedback.service_id == IssuedCard.service_id)
    group = (IssuedCard.topic, IssuedCard.indicator)
    # A card is counted once per order: re-runs of order-select for the same order (and its order-sign)
    # give new card uuids but the same order key. A card with no order counts by itself.
    shown_card = func.coalesce(IssuedCard.order_key, IssuedCard.card_uuid)
    rows: dict[tuple[str | None, str | None], dict[str, Any]] = {}

    with engine.connect() as conn:
        for topic, indicator, shown in conn.execute(
            select(*group, func.count(distinct(shown_card)))
            .where(*card_filter, IssuedCard.suppressed.is_(False))
            .group_by(*group)
        ):
            rows[(topic, indicator)] = _empty_row(topic, indicator, shown)
        for topic, indicator, count in conn.execute(
            select(*group, func.count()).where(*card_filter, IssuedCard.suppressed.is_(True)).group_by(*group)
        ):
            rows.setdefault((topic, indicator), _empty_row(topic, indicator, 0))["suppressedAtSign"] = count

        # Per card (once per order): accepted if it was ever accepted, even when dismissed afterwards.
        per_card = (
            select(
                *group,
                shown_card.label("card"),
                func.max(case((Feedback.outcome == "accepted", 1), else_=0)).label("accepted"),
            )
            .join(IssuedCard, joined)
            .where(*card_filter, *feedback_scope)
            .group_by(*group, shown_card)
            .subquery()
        )
        for topic, indicator, answered, accepted in conn.execute(
            select(
                per_card.c.topic, per_card.c.indicator, func.count(), func.sum(per_card.c.accepted)
            ).group_by(per_card.c.topic, per_card.c.indicator)
        ):
            row = rows.setdefault((topic, indicator), _empty_row(topic, indicator, 0))
            row["feedbackReceived"] = answered
            row["accepted"] = int(accepted or 0)
            row["overridden"] = answered - row["accepted"]

        reasons: dict[tuple[str | None, str | None], dict[tuple[str | None, str], int]] = defaultdict(dict)
        for topic, indicator, code, system, display, count in conn.execute(
            select(
                *group,
                Feedback.override_code,
                Feedback.override_system,
                Feedback.override_display,
                func.count(distinct(shown_card)),
            )
            .join(IssuedCard, joined)
            .where(Feedback.outcome == "overridden", *card_filter, *feedback_scope)
            .group_by(*group, Feedback.override_code, Feedback.override_system, Feedback.override_display)
        ):
            named = reason_displays.display(topic, code, system) if reason_displays else None
            label = display or named or code or NO_REASON
            tally = reasons[(topic, indicator)]
            tally[(code, label)] = tally.get((code, label), 0) + count

        unknown_filter = [Feedback.received_at >= since] if since else []
        # In a client's view, feedback about a card issued to another client is feedback on an unknown card.
        issued_to = scope.matches(IssuedCard) if scope is not None else []
        issued = select(IssuedCard.id).where(joined, *issued_to).exists()
        unknown = conn.execute(
            select(func.count()).select_from(Feedback).where(~issued, *unknown_filter, *feedback_scope)
        ).scalar_one()

    for key, row in rows.items():
        listed = [{"code": c, "display": d, "count": n} for (c, d), n in reasons.get(key, {}).items()]
        ranked = sorted(listed, key=lambda r: (-r["count"], r["display"]))
        row["topOverrideReasons"] = ranked[:TOP_REASONS]
        row["overrideRate"] = _rate(row["overridden"], row["feedbackReceived"])

    ordered = [rows[key] for key in sorted(rows, key=lambda k: (k[0] or "", k[1] or ""))]
    totals = {
        name: sum(row[name] for row in ordered)
        for name in ("cardsShown", "suppressedAtSign", "feedbackReceived", "accepted", "overridden")
    }
    totals["overrideRate"] = _rate(totals["overridden"], totals["feedbackReceived"])
    return {
        "generatedAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "since": since.isoformat() if since else None,
        "scope": scope.describe() if scope is not None else {"client": "all"},
        "ruleVersion": rule_version,
        "rows": ordered,
        "totals": totals,
        "unknownCardFeedback": unknown,
    }


@dataclass(frozen=True)
class ReasonDisplays:
    """The display of every override reason in ``cards/``, for feedback that carries only the code."""

    system: str  # cards/label.yaml override_system: only its codes are ours to name
    by_topic: Mapping[tuple[str, str], str]
    by_code: Mapping[str, str]  # a code with one display across every topic

    @classmethod
    def of(cls, knowledge: Knowledge) -> ReasonDisplays:
        by_topic: dict[tuple[str, str], str] = {}
        names: dict[str, set[str]] = defaultdict(set)
        for name, topic in knowledge.topics.items():
            for reason in topic.override_reasons:
                by_topic[(name, reason.code)] = reason.display
                names[reason.code].add(reason.display)
        by_code = {code: next(iter(found)) for code, found in names.items() if len(found) == 1}
        return cls(knowledge.label.override_system, by_topic, by_code)

    def display(self, topic: str | None, code: str | None, system: str | None) -> str | None:
        # A code in the EHR's own code system may mean something else: it keeps its code.
        if not code or (system and system != self.system):
            return None
        return self.by_topic.get((topic or "", code)) or self.by_code.get(code)


def _empty_row(topic: str | None, indicator: str | None, shown: int) -> dict[str, Any]:
    return {
        "topic": topic,
        "indicator": indicator,
        "cardsShown": shown,
        "feedbackReceived": 0,
        "accepted": 0,
        "overridden": 0,
        "suppressedAtSign": 0,
        "overrideRate": None,
        "topOverrideReasons": [],
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def parse_since(raw: str) -> datetime:
    """``2025-01-31`` or a full ISO timestamp; returned as naive UTC like every stored time."""
    value = datetime.fromisoformat(raw.strip())
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value
