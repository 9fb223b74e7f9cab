"""Sender pools: a campaign's lanes (one per session of its pool), the session that claimed each
recipient, and the sticky sender preference computed at creation.

Existing campaigns become pools of one: ``sessions`` is their ``session_name``, and each gets
its one lane while its session still exists (a finished campaign's session may be gone).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LANE_STATES = ("active", "down")
SENT_BY_PHONE_WHERE = "status = 'sent' AND session_name IS NOT NULL"


def upgrade() -> None:
    op.add_column(
        "campaign_batch_state",
        sa.Column("sessions", postgresql.ARRAY(sa.String(length=100)), nullable=True),
    )
    op.execute("UPDATE campaign_batch_state SET sessions = ARRAY[session_name]")
    op.alter_column("campaign_batch_state", "sessions", nullable=False)

    op.add_column(
        "campaign_recipients", sa.Column("session_name", sa.String(length=100), nullable=True)
    )
    op.add_column(
        "campaign_recipients",
        sa.Column("preferred_session", sa.String(length=100), nullable=True),
    )
    # no row qualifies yet (no recipient has a session): the build is one scan, nothing added
    op.create_index(
        "ix_campaign_recipients_sent_by_phone",
        "campaign_recipients",
        ["phone", sa.text("finished_at DESC")],
        unique=False,
        postgresql_include=["session_name"],
        postgresql_where=sa.text(SENT_BY_PHONE_WHERE),
    )

    op.create_table(
        "campaign_lanes",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("session_name", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(*LANE_STATES, name="lane_state"),
            server_default="active",
            nullable=False,
        ),
        sa.Column(
            "stop_kind",
            postgresql.ENUM("disconnected", "limited", "blocked", name="stop_kind",
                            create_type=False),
            nullable=True,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("resume_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(state = 'down') = (stop_kind IS NOT NULL)",
            name=op.f("ck_campaign_lanes_stop_kind_iff_down"),
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign_batch_state.id"],
            name=op.f("fk_campaign_lanes_campaign_id_campaign_batch_state"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_name"],
            ["campaign_sessions.name"],
            name=op.f("fk_campaign_lanes_session_name_campaign_sessions"),
        ),
        sa.PrimaryKeyConstraint("campaign_id", "session_name", name=op.f("pk_campaign_lanes")),
        sa.UniqueConstraint("campaign_id", "position", name="uq_campaign_lanes_position"),
    )
    op.create_index(
        "ix_campaign_lanes_session_state",
        "campaign_lanes",
        ["session_name", "state"],
        unique=False,
    )
    op.execute(
        "INSERT INTO campaign_lanes (campaign_id, session_name, position, heartbeat_at)"
        " SELECT s.id, s.session_name, 1, s.heartbeat_at FROM campaign_batch_state s"
        " JOIN campaign_sessions n ON n.name = s.session_name"
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_lanes_session_state", table_name="campaign_lanes")
    op.drop_table("campaign_lanes")
    sa.Enum(name="lane_state").drop(op.get_bind(), checkfirst=True)
    op.drop_index(
        "ix_campaign_recipients_sent_by_phone",
        table_name="campaign_recipients",
        postgresql_where=sa.text(SENT_BY_PHONE_WHERE),
    )
    op.drop_column("campaign_recipients", "preferred_session")
    op.drop_column("campaign_recipients", "session_name")
    op.drop_column("campaign_batch_state", "sessions")
