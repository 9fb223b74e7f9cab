"""Migrations agree with the models; downgrade to base works; Python enums match PostgreSQL's."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from campaigns.domain import CampaignStatus, RecipientStatus, StopKind
from campaigns.store import db
from campaigns.store.models import Base


def test_migrations__models_and_migrated_schema_have_no_difference(empty_database_url: str) -> None:
    db.upgrade(empty_database_url)
    engine = create_engine(empty_database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_migrations__downgrade_to_base_leaves_nothing_and_upgrade_again_works(
    empty_database_url: str,
) -> None:
    db.upgrade(empty_database_url)
    assert db.current_revision(empty_database_url) is not None
    db.downgrade(empty_database_url, "base")
    engine = create_engine(empty_database_url)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
        types = conn.execute(text("SELECT typname FROM pg_type WHERE typtype = 'e'")).all()
    engine.dispose()
    assert tables == set()
    assert types == []
    db.upgrade(empty_database_url)
    assert db.current_revision(empty_database_url) is not None


def _enum_labels(url: str, name: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid"
                " WHERE t.typname = :name ORDER BY e.enumsortorder"
            ),
            {"name": name},
        ).all()
    engine.dispose()
    return [r[0] for r in rows]


def test_status_enums__python_and_postgresql_agree(database_url: str) -> None:
    assert _enum_labels(database_url, "campaign_status") == [s.value for s in CampaignStatus]
    assert _enum_labels(database_url, "recipient_status") == [s.value for s in RecipientStatus]
    assert _enum_labels(database_url, "stop_kind") == [k.value for k in StopKind]


def test_migration_0003__gives_campaigns_interrupted_before_it_the_disconnected_kind(
    empty_database_url: str,
) -> None:
    db.upgrade(empty_database_url, "0002")
    engine = create_engine(empty_database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO campaign_batch_state (session_name, status, message, batch_size,"
                " min_interval, max_interval, batch_delay_min, batch_delay_max) VALUES"
                " ('sales', 'interrupted', 'Hi', 3, 0, 0, 0, 0),"
                " ('sales', 'running', 'Hi', 3, 0, 0, 0, 0)"
            )
        )
    db.upgrade(empty_database_url)
    with engine.connect() as conn:
        kinds = conn.execute(
            text("SELECT status, interrupt_kind FROM campaign_batch_state ORDER BY id")
        ).all()
    engine.dispose()
    # before kinds existed every interrupted campaign was resumed on reconnect
    assert [tuple(k) for k in kinds] == [("interrupted", "disconnected"), ("running", None)]


def test_original_design_columns__are_kept_with_their_names(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        inspector = inspect(conn)
        state = {c["name"] for c in inspector.get_columns("campaign_batch_state")}
        details = {c["name"] for c in inspector.get_columns("campaign_batch_details")}
    engine.dispose()
    assert {
        "id",
        "session_name",
        "total_numbers",
        "total_batches",
        "current_batch",
        "processed_numbers",
        "success_count",
        "failed_count",
        "duplicate_count",
        "status",
        "message",
        "created_at",
        "updated_at",
    } <= state
    assert {
        "id",
        "campaign_id",
        "batch_number",
        "sent_count",
        "failed_count",
        "duplicate_count",
        "success",
        "error_message",
        "processed_at",
    } <= details


def test_migration_0004__makes_each_campaign_before_it_a_pool_of_one(
    empty_database_url: str,
) -> None:
    db.upgrade(empty_database_url, "0003")
    engine = create_engine(empty_database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO campaign_sessions (name, gateway, base_url)"
                " VALUES ('sales', 'console', 'console://x')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO campaign_batch_state (session_name, status, message, batch_size,"
                " min_interval, max_interval, batch_delay_min, batch_delay_max) VALUES"
                " ('sales', 'running', 'Hi', 3, 0, 0, 0, 0),"
                " ('gone', 'completed', 'Hi', 3, 0, 0, 0, 0)"
            )
        )
    db.upgrade(empty_database_url, "0004")
    with engine.connect() as conn:
        pools = conn.execute(text("SELECT sessions FROM campaign_batch_state ORDER BY id")).all()
        lanes = conn.execute(
            text("SELECT campaign_id, session_name, position, state FROM campaign_lanes")
        ).all()
    engine.dispose()
    assert [p[0] for p in pools] == [["sales"], ["gone"]]
    # a finished campaign whose session was removed keeps its name, but has no lane to point at
    assert [tuple(lane) for lane in lanes] == [(1, "sales", 1, "active")]
