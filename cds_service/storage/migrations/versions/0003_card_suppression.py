"""Cards not repeated at order-sign: the finding and order each card was about (keyed hashes), whether it
was suppressed, and the findings a clinician accepted or overrode at order-select (until they expire).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Keyed hashes (HMAC with the patient-id key, never in the database): no patient id in clear.
    op.add_column("issued_card", sa.Column("finding_key", sa.String(64), nullable=True))
    op.add_column("issued_card", sa.Column("order_key", sa.String(64), nullable=True))
    op.add_column(
        "issued_card",
        sa.Column("suppressed", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "card_suppression",
        sa.Column("finding_key", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_card_suppression_expires_at", "card_suppression", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_card_suppression_expires_at", table_name="card_suppression")
    op.drop_table("card_suppression")
    with op.batch_alter_table("issued_card") as batch:
        batch.drop_column("suppressed")
        batch.drop_column("order_key")
        batch.drop_column("finding_key")
