"""Initial schema: campaign state and batch details (original design), the recipient ledger,
sender sessions.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 14:29:16.496544
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_batch_state",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_name", sa.String(length=100), nullable=False),
        sa.Column("total_numbers", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_batches", sa.Integer(), server_default="0", nullable=False),
        sa.Column("current_batch", sa.Integer(), server_default="0", nullable=False),
        sa.Column("processed_numbers", sa.Integer(), server_default="0", nullable=False),
        sa.Column("success_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("duplicate_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "running",
                "completed",
                "failed",
                "interrupted",
                "paused",
                "cancelled",
                "scheduled",
                name="campaign_status",
            ),
            nullable=False,
        ),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("invalid_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("unknown_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("min_interval", sa.Float(), nullable=False),
        sa.Column("max_interval", sa.Float(), nullable=False),
        sa.Column("batch_delay_min", sa.Float(), nullable=False),
        sa.Column("batch_delay_max", sa.Float(), nullable=False),
        sa.Column("template", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("run_token", sa.String(length=36), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_batch_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("interrupt_reason", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_batch_state")),
    )
    op.create_index(
        "ix_campaign_batch_state_session_status",
        "campaign_batch_state",
        ["session_name", "status"],
        unique=False,
    )
    op.create_index(
        "ix_campaign_batch_state_status_heartbeat",
        "campaign_batch_state",
        ["status", "heartbeat_at"],
        unique=False,
    )
    op.create_table(
        "campaign_sessions",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("gateway", sa.String(length=20), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("token_env", sa.String(length=200), nullable=True),
        sa.Column(
            "options",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "connection_status", sa.String(length=40), server_default="unknown", nullable=False
        ),
        sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_campaign_sessions")),
    )
    op.create_table(
        "campaign_batch_details",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("batch_number", sa.Integer(), nullable=False),
        sa.Column("sent_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("duplicate_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("invalid_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("unknown_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped_count", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign_batch_state.id"],
            name=op.f("fk_campaign_batch_details_campaign_id_campaign_batch_state"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_batch_details")),
        sa.UniqueConstraint("campaign_id", "batch_number", name="uq_campaign_batch_details_batch"),
    )
    op.create_table(
        "campaign_recipients",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("batch_number", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("variables", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "sending",
                "sent",
                "failed",
                "duplicate",
                "invalid",
                "unknown",
                "skipped",
                name="recipient_status",
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("gateway_message_id", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign_batch_state.id"],
            name=op.f("fk_campaign_recipients_campaign_id_campaign_batch_state"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "position", name=op.f("pk_campaign_recipients")),
    )
    op.create_index(
        "ix_campaign_recipients_open",
        "campaign_recipients",
        ["campaign_id", "batch_number", "position"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_campaign_recipients_open",
        table_name="campaign_recipients",
        postgresql_where=sa.text("status IN ('pending', 'sending')"),
    )
    op.drop_table("campaign_recipients")
    op.drop_table("campaign_batch_details")
    op.drop_table("campaign_sessions")
    op.drop_index("ix_campaign_batch_state_status_heartbeat", table_name="campaign_batch_state")
    op.drop_index("ix_campaign_batch_state_session_status", table_name="campaign_batch_state")
    op.drop_table("campaign_batch_state")
    sa.Enum(name="recipient_status").drop(op.get_bind(), checkfirst=True)
    sa.Enum(name="campaign_status").drop(op.get_bind(), checkfirst=True)
