"""The campaign timeline and the dashboard's activity index.

- ``campaign_events``: what happened to a campaign, one row per state change (created, batch
  done, interrupted, recovered with its trigger, paused, resumed, cancelled, completed, a lane
  down or up, waiting), each written by the store in the transaction of the change it records.
  Deleted with their campaign (cascade), so the cleanup of old campaigns bounds the table.
- ``ix_campaign_recipients_activity``: a campaign's ledger rows by their latest moment
  (``greatest(finished_at, delivered_at, read_at)``), partial on finished rows. The dashboard's
  per-minute chart and current rate read the last minutes of a campaign through it instead of
  scanning the whole campaign (on a 1,000,000-row campaign: ms instead of 100+ ms). Partial,
  so a bulk load of pending rows adds nothing to it; with statistics of its expression, which
  ANALYZE does not keep for a partial index, so that the planner knows the span is small.

Revision ID: 0009_campaign_events
Revises: 0008_receipts_tokens
Create Date: 2026-12-07 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_campaign_events"
down_revision: str | None = "0008_receipts_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVITY = "greatest(finished_at, delivered_at, read_at)"


def upgrade() -> None:
    op.create_table(
        "campaign_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("trigger", sa.String(length=24), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("batch_number", sa.Integer(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("session_name", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign_batch_state.id"],
            name=op.f("fk_campaign_events_campaign_id_campaign_batch_state"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_events")),
    )
    op.create_index("ix_campaign_events_campaign_id_id", "campaign_events", ["campaign_id", "id"])
    op.create_index(
        "ix_campaign_recipients_activity",
        "campaign_recipients",
        ["campaign_id", sa.text(ACTIVITY)],
        postgresql_where=sa.text("finished_at IS NOT NULL"),
    )
    # ANALYZE keeps no statistics of a partial index's expression: without these the planner
    # guesses a third of the campaign for "the last minutes" and scans it all instead
    op.execute(f"CREATE STATISTICS st_campaign_recipients_activity ON ({ACTIVITY}) "
               "FROM campaign_recipients")  # fmt: skip


def downgrade() -> None:
    op.execute("DROP STATISTICS IF EXISTS st_campaign_recipients_activity")
    op.drop_index("ix_campaign_recipients_activity", table_name="campaign_recipients")
    op.drop_index("ix_campaign_events_campaign_id_id", table_name="campaign_events")
    op.drop_table("campaign_events")
