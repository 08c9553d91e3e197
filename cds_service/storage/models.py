"""Tables of the audit trail. Changes here need a new migration in ``migrations/versions``.

Times are naive UTC everywhere: SQLite keeps no time zone, and one convention on both backends keeps
comparisons in the report queries simple.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class IssuedCard(Base):
    """One card the service returned. No patient id, names or resource content: only a salted hash."""

    __tablename__ = "issued_card"
    __table_args__ = (
        UniqueConstraint("card_uuid", name="uq_issued_card_card_uuid"),
        Index("ix_issued_card_topic_indicator", "topic", "indicator"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    card_uuid: Mapped[str] = mapped_column(String(128))
    service_id: Mapped[str] = mapped_column(String(128))
    hook: Mapped[str] = mapped_column(String(64))
    hook_instance: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str | None] = mapped_column(String(128))
    indicator: Mapped[str | None] = mapped_column(String(16))
    issued_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    rule_version: Mapped[str] = mapped_column(String(64))
    patient_hash: Mapped[str | None] = mapped_column(String(64))
    client_iss: Mapped[str | None] = mapped_column(String(512))
    client_tenant: Mapped[str | None] = mapped_column(String(256))
    # Keyed hashes (migration 0003): the finding (topic, order, dose, words) and the order the card was
    # about. ``suppressed``: not shown at order-sign, the clinician had answered it at order-select.
    finding_key: Mapped[str | None] = mapped_column(String(64))
    order_key: Mapped[str | None] = mapped_column(String(64))
    suppressed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class CardSuppression(Base):
    """A finding answered (accepted or overridden) at order-select: not shown again at order-sign until
    ``expires_at`` (``storage/suppression.py``). ``finding_key`` is keyed with the patient-id key."""

    __tablename__ = "card_suppression"

    finding_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class Feedback(Base):
    """One feedback entry. ``dedupe_key`` (card, outcome, outcome time) makes posting twice harmless."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("dedupe_key", name="uq_feedback_dedupe_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedupe_key: Mapped[str] = mapped_column(String(64))
    card_uuid: Mapped[str] = mapped_column(String(128), index=True)
    service_id: Mapped[str] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    accepted_suggestions: Mapped[str | None] = mapped_column(Text)  # JSON array of suggestion ids
    override_code: Mapped[str | None] = mapped_column(String(256))
    override_system: Mapped[str | None] = mapped_column(String(512))
    override_display: Mapped[str | None] = mapped_column(String(512))
    user_comment: Mapped[str | None] = mapped_column(Text)  # free text, may hold PHI: never logged
    outcome_at: Mapped[datetime | None] = mapped_column(DateTime)
    received_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    card_known: Mapped[bool] = mapped_column(Boolean)  # as seen when the entry was written
    client_iss: Mapped[str | None] = mapped_column(String(512))
    client_tenant: Mapped[str | None] = mapped_column(String(256))


class StoreMeta(Base):
    """Small key/value facts about the store itself, such as the generated patient-id salt."""

    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class JwtReplay(Base):
    """A client JWT id seen, until its token expires: the shared replay cache (``security/replay.py``).

    ``key`` is a SHA-256 of issuer and ``jti`` (fixed length whatever the client sends); no patient data.
    """

    __tablename__ = "jwt_replay"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)  # seconds since the epoch
