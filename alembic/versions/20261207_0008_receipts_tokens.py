"""Delivery receipts and the operators' API tokens.

- ``campaign_recipients.delivery_status`` / ``delivered_at`` / ``read_at``: what the gateway
  reported after the send (delivered, read, played, failed), forward only; an index of gateway
  message ids, which receipts are matched by.
- ``campaign_receipts_pending``: receipts whose message id is not (yet) in the ledger: a receipt
  can arrive before the send's record commits; applied when it does, dropped after a while.
- ``api_tokens``: the HTTP API's tokens, stored as SHA-256 hashes (never the token), each with a
  scope (``read`` or ``operator``).

Revision ID: 0008_receipts_tokens
Revises: 0007_consent_content
Create Date: 2026-12-07 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_receipts_tokens"
down_revision: str | None = "0007_consent_content"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    recipients = "campaign_recipients"
    op.add_column(recipients, sa.Column("delivery_status", sa.String(length=16), nullable=True))
    op.add_column(recipients, sa.Column("delivered_at", sa.DateTime(timezone=True)))
    op.add_column(recipients, sa.Column("read_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_campaign_recipients_gateway_message_id",
        recipients,
        ["gateway_message_id"],
        postgresql_where=sa.text("gateway_message_id IS NOT NULL"),
    )
    op.create_table(
        "campaign_receipts_pending",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("gateway_message_id", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_receipts_pending")),
    )
    op.create_index(
        "ix_campaign_receipts_pending_gateway_message_id",
        "campaign_receipts_pending",
        ["gateway_message_id"],
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_api_tokens_name")),
        sa.CheckConstraint("scope IN ('read', 'operator')", name=op.f("ck_api_tokens_scope")),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    op.drop_index(
        "ix_campaign_receipts_pending_gateway_message_id", table_name="campaign_receipts_pending"
    )
    op.drop_table("campaign_receipts_pending")
    op.drop_index("ix_campaign_recipients_gateway_message_id", table_name="campaign_recipients")
    for column in ("read_at", "delivered_at", "delivery_status"):
        op.drop_column("campaign_recipients", column)
