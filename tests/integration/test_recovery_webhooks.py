"""The web service's webhook routes (FastAPI under uvicorn, in a thread) over real loopback
HTTP, against a real PostgreSQL: WAHA session.status
(HMAC-SHA512 verified when a key is set) and Evolution connection.update. The broker is replaced
by a list of the resume_session calls that would be enqueued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from campaigns.state import CampaignStateManager
from campaigns.web.app import create_app
from campaigns.web.server import running
from campaigns.webhooks import HMAC_KEY_ENV, WebhookReceiver, waha_signature

KEY = "webhook-secret"


@dataclass
class Receiver:
    url: str
    resumed: list[tuple[str, str]] = field(default_factory=list)

    def post(
        self,
        dialect: str,
        payload: Any,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> requests.Response:
        body = raw if raw is not None else json.dumps(payload).encode()
        return requests.post(
            f"{self.url}/webhooks/{dialect}",
            data=body,
            timeout=5,
            headers={"Content-Type": "application/json", **(headers or {})},
        )


def _serve(store: CampaignStateManager, hmac_key: str | None) -> Iterator[Receiver]:
    calls: list[tuple[str, str]] = []
    env = {HMAC_KEY_ENV: hmac_key} if hmac_key else {}
    app = create_app(store, resume=lambda s, r: calls.append((s, r)), env=env)
    with running(app) as url:
        yield Receiver(url, calls)


@pytest.fixture
def sessions(store: CampaignStateManager) -> CampaignStateManager:
    store.add_session("sales", "waha", "http://127.0.0.1:1", session="waha-sales")
    store.add_session("support", "evolution", "http://127.0.0.1:1", instance="evo-support")
    store.add_session("plain", "waha", "http://127.0.0.1:1")
    return store


@pytest.fixture
def signed(sessions: CampaignStateManager) -> Iterator[Receiver]:
    yield from _serve(sessions, KEY)


@pytest.fixture
def unsigned(sessions: CampaignStateManager) -> Iterator[Receiver]:
    yield from _serve(sessions, None)


def waha_event(
    session: str, status: str = "WORKING", event: str = "session.status"
) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "timestamp": 1,
        "event": event,
        "session": session,
        "payload": {"name": session, "status": status, "statuses": []},
    }


def evolution_event(instance: str, state: str = "open") -> dict[str, Any]:
    return {
        "event": "connection.update",
        "instance": instance,
        "data": {"instance": instance, "state": state, "statusReason": 200},
    }


def test_waha_reconnect_signed_with_the_key__resumes_our_session_mapped_by_its_option(
    signed: Receiver,
) -> None:
    body = json.dumps(waha_event("waha-sales")).encode()

    answer = signed.post("waha", None, {"X-Webhook-Hmac": waha_signature(KEY, body)}, raw=body)

    assert answer.status_code == 200
    assert [s for s, _ in signed.resumed] == ["sales"]
    assert "reconnected" in signed.resumed[0][1]


def test_waha_event_with_a_bad_signature__is_refused_401_and_resumes_nothing(
    signed: Receiver,
) -> None:
    body = json.dumps(waha_event("waha-sales")).encode()
    forged = waha_signature("another-key", body)

    answer = signed.post("waha", None, {"X-Webhook-Hmac": forged}, raw=body)

    assert answer.status_code == 401
    assert signed.resumed == []


def test_waha_event_without_a_signature_while_a_key_is_set__is_refused_401(
    signed: Receiver,
) -> None:
    assert signed.post("waha", waha_event("waha-sales")).status_code == 401
    assert signed.resumed == []


def test_waha_signature_over_a_different_body__is_refused(signed: Receiver) -> None:
    signature = waha_signature(KEY, json.dumps(waha_event("waha-sales")).encode())
    tampered = json.dumps(waha_event("waha-sales", status="WORKING ")).encode()

    assert signed.post("waha", None, {"X-Webhook-Hmac": signature}, raw=tampered).status_code == 401


def test_waha_unsigned_event_without_a_key__is_accepted(
    unsigned: Receiver, sessions: CampaignStateManager
) -> None:
    assert unsigned.post("waha", waha_event("plain")).status_code == 200
    assert [s for s, _ in unsigned.resumed] == ["plain"]
    assert sessions.get_session("plain").connection_status == "connected"


def test_waha_disconnect__records_the_state_and_resumes_nothing(
    unsigned: Receiver, sessions: CampaignStateManager
) -> None:
    assert unsigned.post("waha", waha_event("waha-sales", "SCAN_QR_CODE")).status_code == 200

    assert unsigned.resumed == []
    session = sessions.get_session("sales")
    assert session.connection_status == "disconnected"
    assert session.last_error is not None and "SCAN_QR_CODE" in session.last_error


def test_evolution_open__resumes_our_session_mapped_by_its_instance(unsigned: Receiver) -> None:
    answer = unsigned.post("evolution", evolution_event("evo-support"))

    assert answer.status_code == 200
    assert [s for s, _ in unsigned.resumed] == ["support"]


def test_evolution_upper_case_event_name__is_understood(unsigned: Receiver) -> None:
    event = {**evolution_event("evo-support"), "event": "CONNECTION_UPDATE"}
    assert unsigned.post("evolution", event).status_code == 200
    assert [s for s, _ in unsigned.resumed] == ["support"]


def test_evolution_close_or_connecting__resumes_nothing(unsigned: Receiver) -> None:
    for state in ("close", "connecting"):
        assert unsigned.post("evolution", evolution_event("evo-support", state)).status_code == 200
    assert unsigned.resumed == []


def test_events_of_unknown_sessions_or_the_other_dialect__are_answered_200_and_ignored(
    unsigned: Receiver,
) -> None:
    assert unsigned.post("waha", waha_event("nobody")).status_code == 200
    # an Evolution event naming a WAHA session maps to nothing: the dialects do not mix
    assert unsigned.post("evolution", evolution_event("waha-sales")).status_code == 200
    assert unsigned.resumed == []


def test_irrelevant_events__are_answered_200_and_ignored(unsigned: Receiver) -> None:
    assert unsigned.post("waha", waha_event("waha-sales", event="message")).status_code == 200
    assert (
        unsigned.post(
            "evolution", {"event": "messages.upsert", "instance": "evo-support", "data": {}}
        ).status_code
        == 200
    )
    assert unsigned.resumed == []


def test_a_body_that_is_not_json__is_answered_400(unsigned: Receiver) -> None:
    assert unsigned.post("evolution", None, raw=b"{not json").status_code == 400


def test_an_unknown_path__is_answered_404(unsigned: Receiver) -> None:
    answer = requests.post(f"{unsigned.url}/webhooks/other", data=b"{}", timeout=5)
    assert answer.status_code == 404


def test_a_broker_outage_while_enqueueing__is_answered_503_so_the_gateway_retries(
    sessions: CampaignStateManager,
) -> None:
    def broker_down(session: str, reason: str) -> None:
        raise ConnectionError("broker unreachable")

    receiver = WebhookReceiver(sessions, broker_down)
    answer = receiver.handle(
        "/webhooks/evolution", {}, json.dumps(evolution_event("evo-support")).encode()
    )
    assert answer.status == 503
