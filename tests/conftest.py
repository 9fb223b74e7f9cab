"""Shared fixtures: a real PostgreSQL with cheap per-test databases.

With DATABASE_URL set (CI: the machine's PostgreSQL) tests use that server; without it they start
an embedded PostgreSQL from the pip package in .data/test-postgres — the same code path either way.
A template database is migrated once per run; each test gets ``CREATE DATABASE … TEMPLATE``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from campaigns.settings import Pacing, Settings
from campaigns.state import CampaignStateManager
from campaigns.store import db

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip locally when a service is missing; in CI a missing service is a failure."""
    if condition:
        return
    if CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database (``postgres``)."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield make_url(configured).set(database="postgres").render_as_string(hide_password=False)
        return
    from campaigns.local.postgres import EmbeddedPostgres

    server = EmbeddedPostgres(ROOT / ".data" / "test-postgres", durable=False)
    server.start()
    yield server.url("postgres")


def _admin(url: str, sql: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> Iterator[str]:
    """A database migrated to head once per test run; tests copy it."""
    name = f"cc_template_{os.getpid()}"
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name}")
    _admin(pg_server_url, f"CREATE DATABASE {name}")
    url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    db.upgrade(url)
    yield name
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """A fresh migrated database for one test."""
    name = f"cc_test_{uuid.uuid4().hex[:12]}"
    _admin(pg_server_url, f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    name = f"cc_empty_{uuid.uuid4().hex[:12]}"
    _admin(pg_server_url, f"CREATE DATABASE {name}")
    yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings() -> Settings:
    return Settings(
        pacing=Pacing(
            batch_size=10, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0
        ),
        default_region="BR",
    )


@pytest.fixture
def store(database_url: str, settings: Settings) -> Iterator[CampaignStateManager]:
    manager = CampaignStateManager(database_url, settings=settings)
    yield manager
    manager.dispose()


@pytest.fixture
def console_session(store: CampaignStateManager) -> str:
    store.add_session("sales", "console", "console://local")
    return "sales"
