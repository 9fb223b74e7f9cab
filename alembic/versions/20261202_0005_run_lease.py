"""The run lease: one live task run per campaign holds the right to send and to enqueue what
comes next, so a redelivered copy of a running task exits instead of forking the chain.

Revision ID: 0005_run_lease
Revises: 0004
Create Date: 2026-12-02 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_run_lease"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # both NULL: no run holds a campaign yet; the next run of each running chain takes it
    op.add_column(
        "campaign_batch_state", sa.Column("run_lease", sa.String(length=36), nullable=True)
    )
    op.add_column(
        "campaign_batch_state",
        sa.Column("run_lease_until", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("campaign_batch_state", "run_lease_until")
    op.drop_column("campaign_batch_state", "run_lease")
