"""Stops have a kind: who may resume an interrupted campaign, and when a limited one resumes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STOP_KINDS = ("disconnected", "limited", "blocked")


def upgrade() -> None:
    # created explicitly: add_column does not create an enum type the way create_table does
    postgresql.ENUM(*STOP_KINDS, name="stop_kind").create(op.get_bind())
    op.add_column(
        "campaign_batch_state",
        sa.Column(
            "interrupt_kind",
            postgresql.ENUM(*STOP_KINDS, name="stop_kind", create_type=False),
            nullable=True,
        ),
    )
    op.add_column(
        "campaign_batch_state",
        sa.Column("resume_at", sa.DateTime(timezone=True), nullable=True),
    )
    # Campaigns interrupted before kinds existed were all resumed on reconnect: keep that.
    op.execute(
        "UPDATE campaign_batch_state SET interrupt_kind = 'disconnected'"
        " WHERE status = 'interrupted'"
    )


def downgrade() -> None:
    op.drop_column("campaign_batch_state", "resume_at")
    op.drop_column("campaign_batch_state", "interrupt_kind")
    sa.Enum(name="stop_kind").drop(op.get_bind(), checkfirst=True)
