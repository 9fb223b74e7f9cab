"""Consent and content: the opt-out list, each campaign's legal basis, message variants, media,
the cross-campaign duplicate window, follow-up campaigns, and each recipient's chosen variant.

- ``campaign_optouts``: one row per opted-out number, global (``session_name`` NULL) or for one
  sender session; ``source`` and ``created_at`` are the proof the LGPD asks for (who said stop,
  how, when), ``via_session`` the session that received an inbound STOP. Unique per (phone,
  session, source) with NULLs not distinct: a global entry of a source exists once, and a
  keyword STOP keeps its own entry when Meta's "resume" lifts Meta's.
- ``campaign_batch_state``: ``legal_basis`` (consent or legitimate_interest) and its note;
  ``variants`` (texts besides ``message``) and ``columns`` (the list's variable names, which
  decide whether ``{a|b}`` is a variable with a fallback or spintax); ``media`` (JSON);
  ``dedupe_days``; ``retry_of`` (the campaign whose failed recipients a follow-up retries).
- ``campaign_recipients.variant``: the variant label chosen at creation, so a resumed or retried
  send uses the same text.

Revision ID: 0007_consent_content
Revises: 0006_sender_protection
Create Date: 2026-12-07 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_consent_content"
down_revision: str | None = "0006_sender_protection"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_optouts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("session_name", sa.String(length=100), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("via_session", sa.String(length=100), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_optouts")),
    )
    op.create_index(
        "uq_campaign_optouts_phone_session",
        "campaign_optouts",
        ["phone", "session_name", "source"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    state = "campaign_batch_state"
    op.add_column(
        state,
        sa.Column("legal_basis", sa.String(length=30), server_default="consent", nullable=False),
    )
    op.add_column(state, sa.Column("legal_note", sa.Text(), nullable=True))
    op.add_column(state, sa.Column("variants", postgresql.ARRAY(sa.Text()), nullable=True))
    op.add_column(state, sa.Column("columns", postgresql.ARRAY(sa.Text()), nullable=True))
    op.add_column(state, sa.Column("media", postgresql.JSONB(), nullable=True))
    op.add_column(state, sa.Column("dedupe_days", sa.Float(), nullable=True))
    op.add_column(state, sa.Column("retry_of", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_campaign_batch_state_legal_basis"),
        state,
        "legal_basis IN ('consent', 'legitimate_interest')",
    )
    op.add_column("campaign_recipients", sa.Column("variant", sa.String(length=200)))


def downgrade() -> None:
    op.drop_column("campaign_recipients", "variant")
    op.drop_constraint(op.f("ck_campaign_batch_state_legal_basis"), "campaign_batch_state")
    for column in (
        "retry_of", "dedupe_days", "media", "columns", "variants", "legal_note", "legal_basis"
    ):
        op.drop_column("campaign_batch_state", column)
    op.drop_index("uq_campaign_optouts_phone_session", table_name="campaign_optouts")
    op.drop_table("campaign_optouts")
