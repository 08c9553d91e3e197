"""Override analytics: per card topic and indicator, how often cards were accepted or overridden, and why.

Counts are of distinct cards: a card with feedback posted twice (or first accepted, later overridden)
is one card with feedback. ``overrideRate`` = overridden / feedbackReceived (null when no feedback).
``since`` filters on when the card was issued; feedback for cards this service never issued is counted
apart (``unknownCardFeedback``, filtered on when it was received). A ``ReportScope`` limits every count
to one client (issuer and tenant): its cards, and the feedback it sent about them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, and_, distinct, func, select

from cds_service.storage.models import Feedback, IssuedCard

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
    engine: Engine, *, since: datetime | None, rule_version: str, scope: ReportScope | None = None
) -> dict[str, Any]:
    """The report over every client (``scope`` None: the operator's view) or over one client's data."""
    card_filter = [IssuedCard.issued_at >= since] if since else []
    feedback_scope: list[ColumnElement[bool]] = []
    if scope is not None:
        card_filter += scope.matches(IssuedCard)
        feedback_scope = scope.matches(Feedback)
    joined = and_(Feedback.card_uuid == IssuedCard.card_uuid, Feedback.service_id == IssuedCard.service_id)
    group = (IssuedCard.topic, IssuedCard.indicator)
    rows: dict[tuple[str | None, str | None], dict[str, Any]] = {}

    with engine.connect() as conn:
        for topic, indicator, shown in conn.execute(
            select(*group, func.count()).where(*card_filter).group_by(*group)
        ):
            rows[(topic, indicator)] = _empty_row(topic, indicator, shown)

        cards_with = func.count(distinct(Feedback.card_uuid))
        for topic, indicator, outcome, count in conn.execute(
            select(*group, Feedback.outcome, cards_with)
            .join(IssuedCard, joined)
            .where(*card_filter, *feedback_scope)
            .group_by(*group, Feedback.outcome)
        ):
            row = rows.setdefault((topic, indicator), _empty_row(topic, indicator, 0))
            if outcome in ("accepted", "overridden"):
                row[outcome] += count
        for topic, indicator, count in conn.execute(
            select(*group, cards_with)
            .join(IssuedCard, joined)
            .where(*card_filter, *feedback_scope)
            .group_by(*group)
        ):
            rows[(topic, indicator)]["feedbackReceived"] = count

        reasons: dict[tuple[str | None, str | None], list[dict[str, Any]]] = defaultdict(list)
        for topic, indicator, code, display, count in conn.execute(
            select(*group, Feedback.override_code, Feedback.override_display, cards_with)
            .join(IssuedCard, joined)
            .where(Feedback.outcome == "overridden", *card_filter, *feedback_scope)
            .group_by(*group, Feedback.override_code, Feedback.override_display)
        ):
            label = display or code or NO_REASON
            reasons[(topic, indicator)].append({"code": code, "display": label, "count": count})

        unknown_filter = [Feedback.received_at >= since] if since else []
        # In a client's view, feedback about a card issued to another client is feedback on an unknown card.
        issued_to = scope.matches(IssuedCard) if scope is not None else []
        issued = select(IssuedCard.id).where(joined, *issued_to).exists()
        unknown = conn.execute(
            select(func.count()).select_from(Feedback).where(~issued, *unknown_filter, *feedback_scope)
        ).scalar_one()

    for key, row in rows.items():
        ranked = sorted(reasons.get(key, []), key=lambda r: (-r["count"], r["display"]))
        row["topOverrideReasons"] = ranked[:TOP_REASONS]
        row["overrideRate"] = _rate(row["overridden"], row["feedbackReceived"])

    ordered = [rows[key] for key in sorted(rows, key=lambda k: (k[0] or "", k[1] or ""))]
    totals = {
        name: sum(row[name] for row in ordered)
        for name in ("cardsShown", "feedbackReceived", "accepted", "overridden")
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


def _empty_row(topic: str | None, indicator: str | None, shown: int) -> dict[str, Any]:
    return {
        "topic": topic,
        "indicator": indicator,
        "cardsShown": shown,
        "feedbackReceived": 0,
        "accepted": 0,
        "overridden": 0,
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
