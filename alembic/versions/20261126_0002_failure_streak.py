"""Consecutive failed recipients per campaign, for the self-pause threshold.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "campaign_batch_state",
        sa.Column("failure_streak", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("campaign_batch_state", "failure_streak")
