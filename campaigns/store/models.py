"""SQLAlchemy models: the schema of record. Alembic migrations are checked against these
(``tests/integration/test_migrations.py``), and the Python status enums against PostgreSQL's.

Longer than the usual module: it is the whole schema in one place, each table with the
indexes its queries need and why, which is what a reader of a migration compares it with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from campaigns.domain import CampaignStatus, LaneState, RecipientStatus, StopKind

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

campaign_status = Enum(
    CampaignStatus,
    name="campaign_status",
    values_callable=lambda e: [m.value for m in e],
)
recipient_status = Enum(
    RecipientStatus,
    name="recipient_status",
    values_callable=lambda e: [m.value for m in e],
)
stop_kind = Enum(
    StopKind,
    name="stop_kind",
    values_callable=lambda e: [m.value for m in e],
)
lane_state = Enum(
    LaneState,
    name="lane_state",
    values_callable=lambda e: [m.value for m in e],
)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SessionRow(Base):
    """A WhatsApp sender session. ``token_env`` names the environment variable holding the
    gateway token: the token itself is never stored."""

    __tablename__ = "campaign_sessions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(20))
    base_url: Mapped[str] = mapped_column(Text)
    token_env: Mapped[str | None] = mapped_column(String(200))
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    connection_status: Mapped[str] = mapped_column(String(40), server_default="unknown")
    last_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    # day 0 of the session's warm-up schedule: its first recorded send
    first_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CampaignBatchState(Base):
    """One row per campaign: the original design's columns, plus pacing, fencing and
    recovery columns. Counters advance when a batch finishes, with its details row."""

    __tablename__ = "campaign_batch_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_name: Mapped[str] = mapped_column(String(100))
    total_numbers: Mapped[int] = mapped_column(Integer, server_default="0")
    total_batches: Mapped[int] = mapped_column(Integer, server_default="0")
    current_batch: Mapped[int] = mapped_column(Integer, server_default="0")
    processed_numbers: Mapped[int] = mapped_column(Integer, server_default="0")
    success_count: Mapped[int] = mapped_column(Integer, server_default="0")
    failed_count: Mapped[int] = mapped_column(Integer, server_default="0")
    duplicate_count: Mapped[int] = mapped_column(Integer, server_default="0")
    status: Mapped[CampaignStatus] = mapped_column(campaign_status)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # --- added for correctness ---
    invalid_count: Mapped[int] = mapped_column(Integer, server_default="0")
    unknown_count: Mapped[int] = mapped_column(Integer, server_default="0")
    skipped_count: Mapped[int] = mapped_column(Integer, server_default="0")
    batch_size: Mapped[int] = mapped_column(Integer)
    min_interval: Mapped[float] = mapped_column(Float)
    max_interval: Mapped[float] = mapped_column(Float)
    batch_delay_min: Mapped[float] = mapped_column(Float)
    batch_delay_max: Mapped[float] = mapped_column(Float)
    template: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    run_token: Mapped[str | None] = mapped_column(String(36))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_batch_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    interrupt_reason: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failure_streak: Mapped[int] = mapped_column(Integer, server_default="0")
    # who may resume an interrupted campaign (NULL unless interrupted), and when a limited one
    # resumes by itself
    interrupt_kind: Mapped[StopKind | None] = mapped_column(stop_kind)
    resume_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the sender pool in lane order (session_name is its first session), fixed at creation:
    # every finder's `SELECT *` carries it without a join; campaign_lanes holds each lane's
    # changing state
    sessions: Mapped[list[str]] = mapped_column(ARRAY(String(100)))
    # the run lease: the one live task run holding the right to send and to enqueue what comes
    # next (its id), until when unless renewed; a redelivered copy of it finds it held and exits
    run_lease: Mapped[str | None] = mapped_column(String(36))
    run_lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the campaign's own send window (campaigns.windows JSON); NULL: the sessions' windows only
    send_window: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # what a running campaign waits for (a session's capacity or window, a deferred
    # recipient) and until when; cleared by its next send. A wait interrupts nothing.
    waiting_reason: Mapped[str | None] = mapped_column(Text)
    waiting_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the trailing batch of recipients deferred for a day (Cloud API 131049)
    retry_batch: Mapped[int | None] = mapped_column(Integer)
    # the LGPD basis the sender relies on, with its note (shown with the campaign)
    legal_basis: Mapped[str] = mapped_column(String(30), server_default="consent")
    legal_note: Mapped[str | None] = mapped_column(Text)
    # texts besides `message` (one chosen per recipient) and the list's variable names, which
    # decide whether {a|b} is a variable with a fallback or spintax (campaigns.content)
    variants: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    columns: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    media: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # numbers the pool messaged this many days back were marked duplicate at creation
    dedupe_days: Mapped[float | None] = mapped_column(Float)
    # a follow-up campaign: the campaign whose failed (or unknown) recipients it retries
    retry_of: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint(
            "legal_basis IN ('consent', 'legitimate_interest')", name="legal_basis"
        ),
        # the sweep: running campaigns by heartbeat
        Index("ix_campaign_batch_state_status_heartbeat", "status", "heartbeat_at"),
        # find_interrupted_campaigns(session), list by session
        Index("ix_campaign_batch_state_session_status", "session_name", "status"),
    )


class CampaignBatchDetails(Base):
    """One row per finished batch, written in the same transaction that advances the state."""

    __tablename__ = "campaign_batch_details"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign_batch_state.id", ondelete="CASCADE")
    )
    batch_number: Mapped[int] = mapped_column(Integer)
    sent_count: Mapped[int] = mapped_column(Integer, server_default="0")
    failed_count: Mapped[int] = mapped_column(Integer, server_default="0")
    duplicate_count: Mapped[int] = mapped_column(Integer, server_default="0")
    success: Mapped[bool] = mapped_column(Boolean)
    error_message: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # --- added for correctness ---
    invalid_count: Mapped[int] = mapped_column(Integer, server_default="0")
    unknown_count: Mapped[int] = mapped_column(Integer, server_default="0")
    skipped_count: Mapped[int] = mapped_column(Integer, server_default="0")

    __table_args__ = (
        # finish_batch is idempotent: a redelivered task cannot count a batch twice
        UniqueConstraint("campaign_id", "batch_number", name="uq_campaign_batch_details_batch"),
    )


class CampaignRecipient(Base):
    """The recipient ledger: one row per input entry, in input order."""

    __tablename__ = "campaign_recipients"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign_batch_state.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_number: Mapped[int] = mapped_column(Integer)
    phone: Mapped[str | None] = mapped_column(String(20))
    raw: Mapped[str] = mapped_column(Text)
    variables: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[RecipientStatus] = mapped_column(recipient_status)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    gateway_message_id: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the pool session whose lane claimed (and so sent) this recipient; NULL until claimed
    session_name: Mapped[str | None] = mapped_column(String(100))
    # sticky sender: the pool session that last sent to this phone successfully, in an
    # earlier campaign (set at creation); other lanes leave it to that lane while it is healthy
    preferred_session: Mapped[str | None] = mapped_column(String(100))
    # a pending recipient is not claimed before this (131049: a day later; 131056: after the
    # pair-rate wait); deferrals bounds how often
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deferrals: Mapped[int] = mapped_column(Integer, server_default="0")
    # the message variant chosen at creation (campaigns.content's label)
    variant: Mapped[str | None] = mapped_column(String(200))
    # what the gateway reported after the send (delivered, read, played, failed): receipts
    # only move it forward
    delivery_status: Mapped[str | None] = mapped_column(String(16))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # the claim: the first pending recipient of a batch, in input order
        Index(
            "ix_campaign_recipients_open",
            "campaign_id",
            "batch_number",
            "position",
            postgresql_where=text("status IN ('pending', 'sending')"),
        ),
        # sticky sender at creation: per phone of the new list, its latest successful send by
        # a session, one index probe each. Partial, so a bulk load (pending, no session) adds
        # nothing to it; a row enters it when it is recorded sent.
        Index(
            "ix_campaign_recipients_sent_by_phone",
            "phone",
            text("finished_at DESC"),
            postgresql_include=["session_name"],
            postgresql_where=text("status = 'sent' AND session_name IS NOT NULL"),
        ),
        # caps rebuilt from the ledger: a session's sends of the last 24 h
        Index(
            "ix_campaign_recipients_sent_by_session",
            "session_name",
            "finished_at",
            postgresql_where=text("status = 'sent' AND session_name IS NOT NULL"),
        ),
        # receipts are matched to their send by the gateway's message id
        Index(
            "ix_campaign_recipients_gateway_message_id",
            "gateway_message_id",
            postgresql_where=text("gateway_message_id IS NOT NULL"),
        ),
        # the dashboard's search by a full number or its last digits: one index range
        # (reverse(phone) LIKE '4321%') instead of a read of the whole campaign
        Index(
            "ix_campaign_recipients_phone_suffix",
            "campaign_id",
            literal_column("reverse(phone)").label("phone_reversed"),
            postgresql_ops={"phone_reversed": "text_pattern_ops"},
            postgresql_where=text("phone IS NOT NULL"),
        ),
        # every status view's latest error of a campaign: one probe, not a read of its rows
        Index(
            "ix_campaign_recipients_last_error",
            "campaign_id",
            text("updated_at DESC NULLS LAST"),
            postgresql_where=text("error_message IS NOT NULL"),
        ),
        # the dashboard's last minutes of a campaign (activity, current rate) without a scan
        # of its whole ledger: a row's latest moment (sent, delivered or read)
        Index(
            "ix_campaign_recipients_activity",
            "campaign_id",
            text("greatest(finished_at, delivered_at, read_at)"),
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
    )


class OptOut(Base):
    """A number that must not be messaged: globally (``session_name`` NULL) or by one sender
    session. ``source`` and ``created_at`` are the proof of when and how it was asked (the
    operator, an import, an inbound STOP, Meta's preferences, a 131050 answer)."""

    __tablename__ = "campaign_optouts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    phone: Mapped[str] = mapped_column(String(20))
    session_name: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text)
    via_session: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        # one entry per number, scope and source; the claim's check is one probe of it
        Index(
            "uq_campaign_optouts_phone_session",
            "phone",
            "session_name",
            "source",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
    )


class PendingReceipt(Base):
    """A receipt whose message id is not in the ledger (yet): it can arrive before the send's
    record commits. Applied when the send is recorded; dropped after a while."""

    __tablename__ = "campaign_receipts_pending"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    gateway_message_id: Mapped[str] = mapped_column(Text, index=True)
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class ApiToken(Base):
    """A token of the operators' HTTP API: only its SHA-256 hash is stored, with its scope
    (``read`` or ``operator``)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("scope IN ('read', 'operator')", name="scope"),)


class CampaignLane(Base):
    """One lane of a campaign: the sending of it through one session of its pool (a
    one-session campaign is a pool of one). A lane is ``active`` (it claims recipients) or
    ``down`` with the kind of its stop, as a campaign is interrupted: the other lanes take its
    unclaimed recipients meanwhile, and when every lane is down the campaign is interrupted."""

    __tablename__ = "campaign_lanes"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign_batch_state.id", ondelete="CASCADE"), primary_key=True
    )
    # no cascade: a session in an unfinished campaign's pool cannot disappear under it
    # (remove_session drops the lanes of finished campaigns first)
    session_name: Mapped[str] = mapped_column(
        ForeignKey("campaign_sessions.name"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer)
    state: Mapped[LaneState] = mapped_column(lane_state, server_default=LaneState.ACTIVE.value)
    stop_kind: Mapped[StopKind | None] = mapped_column(stop_kind)
    reason: Mapped[str | None] = mapped_column(Text)
    resume_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # stamped by the lane's claims and waits; a stale one no longer holds its sticky numbers
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        UniqueConstraint("campaign_id", "position", name="uq_campaign_lanes_position"),
        # a down lane says why; an active one carries no stop
        CheckConstraint(
            "(state = 'down') = (stop_kind IS NOT NULL)", name="stop_kind_iff_down"
        ),
        # the session watcher: down lanes of a session; remove_session: lanes of a session
        Index("ix_campaign_lanes_session_state", "session_name", "state"),
    )


class CampaignEventRow(Base):
    """The campaign's timeline: one row per state change, written by the store in the
    transaction of the change (so it never disagrees with the state). Kinds and their columns:
    :mod:`campaigns.timeline`."""

    __tablename__ = "campaign_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign_batch_state.id", ondelete="CASCADE")
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    kind: Mapped[str] = mapped_column(String(24))
    trigger: Mapped[str | None] = mapped_column(String(24))
    detail: Mapped[str | None] = mapped_column(Text)
    batch_number: Mapped[int | None] = mapped_column(Integer)
    position: Mapped[int | None] = mapped_column(Integer)
    session_name: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (
        # a campaign's events in order, and the page after a given id (live updates)
        Index("ix_campaign_events_campaign_id_id", "campaign_id", "id"),
    )
