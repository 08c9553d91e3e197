"""Issued cards, feedback entries and store metadata.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issued_card",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("card_uuid", sa.String(128), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("hook", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(128), nullable=False),
        sa.Column("topic", sa.String(128), nullable=True),
        sa.Column("indicator", sa.String(16), nullable=True),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("rule_version", sa.String(64), nullable=False),
        sa.Column("patient_hash", sa.String(64), nullable=True),
        sa.Column("client_iss", sa.String(512), nullable=True),
        sa.Column("client_tenant", sa.String(256), nullable=True),
        sa.UniqueConstraint("card_uuid", name="uq_issued_card_card_uuid"),
    )
    op.create_index("ix_issued_card_issued_at", "issued_card", ["issued_at"])
    op.create_index("ix_issued_card_topic_indicator", "issued_card", ["topic", "indicator"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("card_uuid", sa.String(128), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("accepted_suggestions", sa.Text(), nullable=True),
        sa.Column("override_code", sa.String(256), nullable=True),
        sa.Column("override_system", sa.String(512), nullable=True),
        sa.Column("override_display", sa.String(512), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_at", sa.DateTime(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("card_known", sa.Boolean(), nullable=False),
        sa.Column("client_iss", sa.String(512), nullable=True),
        sa.Column("client_tenant", sa.String(256), nullable=True),
        sa.UniqueConstraint("dedupe_key", name="uq_feedback_dedupe_key"),
    )
    op.create_index("ix_feedback_card_uuid", "feedback", ["card_uuid"])
    op.create_index("ix_feedback_received_at", "feedback", ["received_at"])

    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("store_meta")
    op.drop_index("ix_feedback_received_at", table_name="feedback")
    op.drop_index("ix_feedback_card_uuid", table_name="feedback")
    op.drop_table("feedback")
    op.drop_index("ix_issued_card_topic_indicator", table_name="issued_card")
    op.drop_index("ix_issued_card_issued_at", table_name="issued_card")
    op.drop_table("issued_card")
