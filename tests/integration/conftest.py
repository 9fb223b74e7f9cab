"""Fixtures the store's integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine


@pytest.fixture
def sql(database_url: str) -> Iterator[Engine]:
    """A plain connection to the test's database, for arranging what the store never does by
    itself (an old heartbeat, statistics from before a campaign) and for counting rows."""
    engine = create_engine(database_url, pool_size=1)
    yield engine
    engine.dispose()
