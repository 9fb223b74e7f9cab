"""Sender protection: send windows, capacity waits, recipient-level deferrals, warm-up.

- ``campaign_batch_state.send_window``: the campaign's own send window (JSON; NULL: none).
- ``campaign_batch_state.waiting_reason`` / ``waiting_until``: what a running campaign waits
  for (capacity of a session, its window, a deferred recipient) and until when; cleared by the
  next send. Shown by ``status``; nothing is interrupted by a wait.
- ``campaign_batch_state.retry_batch``: the trailing batch holding recipients deferred for a
  day (Cloud API 131049), created on the first such deferral.
- ``campaign_recipients.not_before`` / ``deferrals``: a pending recipient is not claimed before
  ``not_before`` (131049 a day later, 131056 after the pair-rate wait); ``deferrals`` bounds
  how often.
- ``campaign_sessions.first_sent_at``: day 0 of a session's warm-up schedule.
- an index of sent rows by session and time: caps are rebuilt from the ledger after Redis
  loses them.

Revision ID: 0006_sender_protection
Revises: 0005_run_lease
Create Date: 2026-12-03 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_sender_protection"
down_revision: str | None = "0005_run_lease"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    state = "campaign_batch_state"
    op.add_column(state, sa.Column("send_window", postgresql.JSONB(), nullable=True))
    op.add_column(state, sa.Column("waiting_reason", sa.Text(), nullable=True))
    op.add_column(state, sa.Column("waiting_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column(state, sa.Column("retry_batch", sa.Integer(), nullable=True))
    recipients = "campaign_recipients"
    op.add_column(recipients, sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        recipients, sa.Column("deferrals", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("campaign_sessions", sa.Column("first_sent_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_campaign_recipients_sent_by_session",
        recipients,
        ["session_name", "finished_at"],
        postgresql_where=sa.text("status = 'sent' AND session_name IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_recipients_sent_by_session", table_name="campaign_recipients")
    op.drop_column("campaign_sessions", "first_sent_at")
    op.drop_column("campaign_recipients", "deferrals")
    op.drop_column("campaign_recipients", "not_before")
    for column in ("retry_batch", "waiting_until", "waiting_reason", "send_window"):
        op.drop_column("campaign_batch_state", column)
