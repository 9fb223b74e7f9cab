"""Shared HTTP plumbing: what a network failure means, timeouts, Retry-After, sessions.

The rule under test: TRANSIENT only when the request provably never reached the gateway;
AMBIGUOUS whenever it may have been sent.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import urllib3.exceptions

from campaigns.domain import StopKind
from campaigns.gateways.base import (
    Gateway,
    GatewayConfig,
    OutcomeKind,
    OutgoingMessage,
    SendOutcome,
)
from campaigns.gateways.cloud_api import CloudApiGateway
from campaigns.gateways.evolution import EvolutionGateway
from campaigns.gateways.http import (
    MAX_RETRY_AFTER,
    HttpClient,
    classify_exception,
    parse_retry_after,
    redact,
)
from campaigns.gateways.waha import WahaGateway
from tests.gateway_stub import GatewayStub, assert_no_secrets, capture_all_logs, closed_port_url
from tests.unit.test_gateway_http_tls import handshake_refused

TOKEN = "transport-secret-token-91"
NUMBER = "+5511999991234"
MESSAGE = OutgoingMessage(to=NUMBER, text="Hi")

# kind -> (factory, send route, health route)
ADAPTERS: dict[str, tuple[Callable[[GatewayConfig], Gateway], str, str]] = {
    "cloud-api": (CloudApiGateway, "/v25.0/123/messages", "/v25.0/123"),
    "waha": (WahaGateway, "/api/sendText", "/api/sessions/default"),
    "evolution": (
        EvolutionGateway,
        "/message/sendText/default",
        "/instance/connectionState/default",
    ),
}


def make(kind: str, base_url: str, read_timeout: float = 2.0) -> Gateway:
    factory = ADAPTERS[kind][0]
    options = {"phone_number_id": "123"} if kind == "cloud-api" else {}
    config = GatewayConfig(
        "default", base_url, TOKEN, options, connect_timeout=1.0, read_timeout=read_timeout
    )
    return factory(config)


@pytest.fixture
def stub() -> Iterator[GatewayStub]:
    with GatewayStub() as running:
        yield running


# --------------------------------------------------------------------------- over real sockets


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_send__closed_port_is_transient(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    capture_all_logs(caplog)
    gateway = make(kind, closed_port_url())

    outcome = gateway.send(MESSAGE)

    assert (outcome.kind, outcome.error_code) == (OutcomeKind.TRANSIENT, "connect_failed")
    assert gateway.health().connected is False
    assert_no_secrets(caplog, TOKEN, NUMBER)
    gateway.close()


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_send__server_closing_after_reading_the_request_is_ambiguous(
    kind: str, stub: GatewayStub
) -> None:
    gateway = make(kind, stub.url)
    stub.answer("POST", ADAPTERS[kind][1], drop=True)

    outcome = gateway.send(MESSAGE)

    assert outcome.kind is OutcomeKind.AMBIGUOUS
    assert len(stub.requests) == 1, "the request did reach the gateway"
    gateway.close()


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_send__answer_slower_than_read_timeout_is_ambiguous(kind: str, stub: GatewayStub) -> None:
    gateway = make(kind, stub.url, read_timeout=0.2)
    stub.answer("POST", ADAPTERS[kind][1], 200, {}, delay=1.0)

    started = time.monotonic()
    outcome = gateway.send(MESSAGE)

    assert time.monotonic() - started < 0.9, "the read timeout must bound the call"
    assert (outcome.kind, outcome.error_code) == (OutcomeKind.AMBIGUOUS, "read_timeout")
    gateway.close()


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_health__slow_or_dropped_answer_is_not_connected_and_bounded(
    kind: str, stub: GatewayStub
) -> None:
    gateway = make(kind, stub.url, read_timeout=0.2)
    stub.answer("GET", ADAPTERS[kind][2], 200, {}, delay=1.0)

    started = time.monotonic()
    slow = gateway.health()
    stub.answer("GET", ADAPTERS[kind][2], drop=True)
    dropped = gateway.health()

    assert time.monotonic() - started < 1.5
    assert slow.connected is dropped.connected is False
    gateway.close()


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_send__keep_alive_connection_is_reused_after_an_error(kind: str, stub: GatewayStub) -> None:
    gateway = make(kind, stub.url)
    stub.answer("POST", ADAPTERS[kind][1], 500, None)
    gateway.send(MESSAGE)
    stub.answer("POST", ADAPTERS[kind][1], 201, {})

    assert gateway.send(MESSAGE).kind is OutcomeKind.SENT
    gateway.close()


def test_every_call_carries_both_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def fake_request(self: requests.Session, method: str, url: str, **kw: Any) -> Any:
        seen.append(kw.get("timeout"))
        raise requests.exceptions.ConnectTimeout("no")

    monkeypatch.setattr(requests.Session, "request", fake_request)
    config = GatewayConfig(
        "default", "http://gw", TOKEN, {"check_exists": "true"}, connect_timeout=3, read_timeout=7
    )
    waha = WahaGateway(config)
    waha.send(MESSAGE)
    waha.health()
    for kind in ("cloud-api", "evolution"):
        gateway = make(kind, "http://gw")
        gateway.send(MESSAGE)
        gateway.health()

    assert seen[:2] == [(3, 7), (3, 7)]
    assert len(seen) == 6
    assert all(isinstance(t, tuple) and len(t) == 2 for t in seen)


def test_invalid_base_url_stops_the_campaign_instead_of_failing_recipients() -> None:
    gateway = make("waha", "gw.example:8080")  # no scheme

    outcome = gateway.send(MESSAGE)

    assert outcome.kind is OutcomeKind.SESSION_DOWN
    assert outcome.stop is StopKind.BLOCKED  # a configuration mistake: no reconnect fixes it
    assert outcome.error_message is not None
    assert TOKEN not in outcome.error_message


# --------------------------------------------------------------------------- exception table


def _refused() -> requests.ConnectionError:
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/x", reason))  # type: ignore[arg-type]


def _aborted() -> requests.ConnectionError:
    cut = http.client.RemoteDisconnected("Remote end closed connection without response")
    return requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", cut))


def _reset() -> requests.ConnectionError:
    reset = ConnectionResetError(104, "Connection reset by peer")
    return requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.", reset))


EXCEPTION_TABLE: list[tuple[str, Callable[[], BaseException], OutcomeKind]] = [
    ("connect-timeout", lambda: requests.exceptions.ConnectTimeout("t"), OutcomeKind.TRANSIENT),
    ("refused", _refused, OutcomeKind.TRANSIENT),
    ("tls-handshake", handshake_refused, OutcomeKind.TRANSIENT),
    ("tls-after-the-request", lambda: requests.exceptions.SSLError("bad record mac"),
     OutcomeKind.AMBIGUOUS),
    ("read-timeout", lambda: requests.exceptions.ReadTimeout("t"), OutcomeKind.AMBIGUOUS),
    ("remote-disconnected", _aborted, OutcomeKind.AMBIGUOUS),
    ("reset-while-reading", _reset, OutcomeKind.AMBIGUOUS),
    ("bare-connection-error", lambda: requests.ConnectionError("?"), OutcomeKind.AMBIGUOUS),
    ("body-cut", lambda: requests.exceptions.ChunkedEncodingError("x"), OutcomeKind.AMBIGUOUS),
    ("invalid-url", lambda: requests.exceptions.InvalidURL("x"), OutcomeKind.SESSION_DOWN),
]


@pytest.mark.parametrize(
    ("make_exc", "kind"),
    [row[1:] for row in EXCEPTION_TABLE],
    ids=[row[0] for row in EXCEPTION_TABLE],
)
def test_classify_exception__only_a_failure_to_connect_is_transient_on_a_send(
    make_exc: Callable[[], BaseException], kind: OutcomeKind
) -> None:
    assert classify_exception(make_exc(), sends=True).kind is kind


def test_session_down_without_a_stop__is_disconnected_unless_the_token_was_refused() -> None:
    # outcomes built before stops had kinds (test doubles, adapters of other projects) keep
    # their old meaning: resumed on reconnect, except a refused token
    assert SendOutcome(OutcomeKind.SESSION_DOWN).stop_kind is StopKind.DISCONNECTED
    refused = SendOutcome(OutcomeKind.SESSION_DOWN, auth_failure=True)
    assert refused.stop_kind is StopKind.BLOCKED
    limited = SendOutcome(OutcomeKind.SESSION_DOWN, stop=StopKind.LIMITED, retry_after=60)
    assert limited.stop_kind is StopKind.LIMITED


@pytest.mark.parametrize("make_exc", [_aborted, _reset, lambda: requests.ReadTimeout("t")])
def test_classify_exception__a_lookup_that_got_no_answer_is_transient(
    make_exc: Callable[[], BaseException],
) -> None:
    assert classify_exception(make_exc(), sends=False).kind is OutcomeKind.TRANSIENT


# --------------------------------------------------------------------------- Retry-After

NOW = datetime(2026, 9, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
        ("Tue, 01 Sep 2026 12:00:30 GMT", 30.0),
        ("Tue, 01 Sep 2026 11:00:00 GMT", 0.0),
        ("Sat, 01 Sep 2046 12:00:00 GMT", MAX_RETRY_AFTER),
        ("99999999", MAX_RETRY_AFTER),
    ],
)
def test_parse_retry_after__seconds_or_http_date(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


# --------------------------------------------------------------------------- sessions, redact


def test_http_client__one_session_per_thread_and_close_releases_them_all() -> None:
    client = HttpClient(GatewayConfig("s", "http://gw"), {"apikey": TOKEN})
    mine = client._session()
    theirs: list[requests.Session] = []
    thread = threading.Thread(target=lambda: theirs.append(client._session()))
    thread.start()
    thread.join()

    assert client._session() is mine
    assert theirs[0] is not mine
    assert mine.headers["apikey"] == TOKEN
    client.close()
    assert client._sessions == []
    assert client._session() is not mine, "a closed client opens fresh sessions"
    client.close()


def test_redact__masks_numbers_and_jids_and_cuts_long_text() -> None:
    text = redact('{"jid":"5511999991234@s.whatsapp.net","n":"+55 11 99999-1234"} ' + "x" * 500)

    assert "5511999991234" not in text
    assert "99999-1234" not in text
    assert len(text) == 300
    assert redact("(#130429) Rate limit hit") == "(#130429) Rate limit hit"


def test_client__honours_a_proxy_set_in_the_environment(
    stub: GatewayStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", stub.url)
    stub.answer("GET", "/api/sessions/s1", 200, {"name": "s1", "status": "WORKING"})
    gateway = WahaGateway(GatewayConfig("s1", "http://gateway.invalid:9", token="k"))

    assert gateway.health().connected
    assert stub.requests[0].path.startswith("http://gateway.invalid:9/api/sessions/s1")
    gateway.close()
