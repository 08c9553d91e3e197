"""JWT replay cache table (jti seen per issuer, until the token expires).

Before this revision the service created the table itself (``create_all``) when the replay cache used
PostgreSQL, so it may already exist: then only the index is ensured.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_INDEX = "ix_jwt_replay_expires_at"


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("jwt_replay"):
        op.create_table(
            "jwt_replay",
            sa.Column("key", sa.String(64), primary_key=True),  # sha256 of iss + jti, hex
            sa.Column("expires_at", sa.Float(), nullable=False),  # seconds since the epoch
        )
    elif any(index["name"] == _INDEX for index in inspector.get_indexes("jwt_replay")):
        return
    op.create_index(_INDEX, "jwt_replay", ["expires_at"])


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="jwt_replay")
    op.drop_table("jwt_replay")
