"""A client given an explicit broker publishes there, even with CELERY_BROKER_URL set."""

from __future__ import annotations

import pytest

from campaigns.dispatch import client_app


def test_client_app__explicit_broker_beats_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://elsewhere:6379/0")
    app = client_app("redis://127.0.0.1:6390/3", "t")
    with app.connection_for_write() as conn:
        assert (conn.hostname, conn.port, conn.virtual_host) == ("127.0.0.1", 6390, "3")
