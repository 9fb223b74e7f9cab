"""The web service itself (FastAPI under uvicorn, over real loopback HTTP): /healthz with the
database up and down, the body limit, the access log without query strings (Meta's handshake
carries its verify token in the URL), and a stop that leaves no thread behind. The webhook
rules are tested through the same service in test_recovery_webhooks and test_webhooks_optouts.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from campaigns.settings import Settings
from campaigns.state import CampaignStateManager
from campaigns.web.app import create_app
from campaigns.web.server import NoQueryString, running
from campaigns.webhooks import MAX_BODY_BYTES, VERIFY_TOKEN_ENV

CLOSED_PORT_URL = "postgresql+psycopg2://postgres@127.0.0.1:1/none"


@pytest.fixture
def service(store: CampaignStateManager) -> Iterator[str]:
    app = create_app(store, resume=lambda s, r: None, env={VERIFY_TOKEN_ENV: "verify-me"})
    with running(app) as url:
        yield url


def test_healthz__is_200_with_the_store_reachable(service: str) -> None:
    answer = requests.get(f"{service}/healthz", timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"ok": True, "database": "reachable"}
    # the http.server receiver's /health keeps answering for the scripts that probe it
    assert requests.get(f"{service}/health", timeout=5).status_code == 200


def test_healthz__is_503_with_the_database_down(settings: Settings) -> None:
    down = CampaignStateManager(CLOSED_PORT_URL, settings=settings)
    try:
        with running(create_app(down, resume=lambda s, r: None, env={})) as url:
            answer = requests.get(f"{url}/healthz", timeout=10)
            assert answer.status_code == 503
            assert answer.json()["ok"] is False
    finally:
        down.dispose()


def test_a_body_over_the_limit__is_answered_413_declared_or_chunked(service: str) -> None:
    big = b"x" * (MAX_BODY_BYTES + 1)
    answer = requests.post(f"{service}/webhooks/evolution", data=big, timeout=10)
    assert answer.status_code == 413 and answer.json() == {"error": "body too large"}

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536

    answer = requests.post(f"{service}/webhooks/evolution", data=chunks(), timeout=10)
    assert answer.status_code == 413


def test_trailing_slash_and_evolution_event_paths__reach_the_receiver(service: str) -> None:
    for path in ("/webhooks/evolution/", "/webhooks/evolution/messages-upsert"):
        answer = requests.post(f"{service}{path}", data=b"{}", timeout=5)
        assert answer.status_code == 200, path  # an event we do not act on: 200, ignored


def test_the_access_log__never_carries_the_query_string() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/webhooks/cloud?hub.verify_token=verify-me", "1.1", 200), None,
    )  # fmt: skip
    assert NoQueryString().filter(record)
    assert "verify-me" not in record.getMessage()
    assert "/webhooks/cloud HTTP/1.1" in record.getMessage()


def test_the_handshake_answers_and_its_token_stays_out_of_the_log(
    service: str, caplog: pytest.LogCaptureFixture
) -> None:
    from campaigns.web.server import _quiet_queries

    _quiet_queries()  # what serve() does before it starts
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "c", "GET", "/webhooks/cloud?hub.verify_token=verify-me",
        "1.1", 200,
    )  # fmt: skip
    params = {"hub.mode": "subscribe", "hub.verify_token": "verify-me", "hub.challenge": "42"}
    answer = requests.get(f"{service}/webhooks/cloud", params=params, timeout=5)
    assert answer.status_code == 200 and answer.text == "42"
    assert "verify-me" not in caplog.text


def test_the_openapi_page__documents_the_webhook_routes(service: str) -> None:
    paths = requests.get(f"{service}/openapi.json", timeout=5).json()["paths"]
    assert {"/healthz", "/webhooks/waha", "/webhooks/evolution", "/webhooks/cloud"} <= set(paths)


def test_stopping_a_service_that_built_its_own_store__leaves_no_thread(
    database_url: str, settings: Settings
) -> None:
    before = set(threading.enumerate())
    own = dataclasses.replace(settings, database_url=database_url)  # the app builds its store
    with running(create_app(settings=own, resume=lambda s, r: None, env={})) as url:
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    # AnyIO's worker threads are told to stop when the event loop closes and end a moment
    # after it: give them that moment, never more
    deadline = time.monotonic() + 5
    while (left := [t for t in set(threading.enumerate()) - before if t.is_alive()]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert left == []
