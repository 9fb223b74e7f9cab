"""Opt-outs through the web service's webhook routes (FastAPI under uvicorn,
in a thread), over real loopback HTTP against a real PostgreSQL:
keyword replies through WAHA (HMAC-SHA512), Evolution (unsigned) and the Cloud API
(X-Hub-Signature-256, refused when missing, wrong or when no app secret is set), Meta's
user_preferences stop/resume, Meta's GET handshake, a store outage answered 503; and the
sandbox's control calls producing the opt-out end to end."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from campaigns.consent import OptOutEntry
from campaigns.sandbox.control import SandboxControl
from campaigns.settings import Settings
from campaigns.state import CampaignStateManager
from campaigns.web.app import create_app
from campaigns.web.server import running
from campaigns.webhooks import (
    APP_SECRET_ENV,
    HMAC_KEY_ENV,
    VERIFY_TOKEN_ENV,
    cloud_signature,
    waha_signature,
)
from tests.integration.test_sandbox_helpers import running_sandbox
from tests.unit.test_inbound import cloud_preference, cloud_text, evolution_upsert, waha_message

KEY = "waha-hmac-key"
APP_SECRET = "meta-app-secret"
VERIFY_TOKEN = "verify-me"
PERSON = "+5511987654321"
PHONE_NUMBER_ID = "106540352242922"


@dataclass
class Receiver:
    url: str

    def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> requests.Response:
        return requests.post(
            f"{self.url}{path}",
            data=body,
            timeout=5,
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    def waha(self, payload: dict[str, Any], key: str | None = KEY) -> requests.Response:
        body = json.dumps(payload).encode()
        signed = {"X-Webhook-Hmac": waha_signature(key, body)} if key else {}
        return self.post("/webhooks/waha", body, signed)

    def cloud(self, payload: dict[str, Any], secret: str | None = APP_SECRET) -> requests.Response:
        body = json.dumps(payload, separators=(",", ":")).encode()
        signed = {"X-Hub-Signature-256": cloud_signature(secret, body)} if secret else {}
        return self.post("/webhooks/cloud", body, signed)


def _serve(
    store: CampaignStateManager,
    *,
    hmac_key: str | None = None,
    app_secret: str | None = None,
    verify_token: str | None = None,
    keywords: frozenset[str] | None = None,
) -> Iterator[Receiver]:
    """The web service in a thread, its secrets given as the environment it reads them from."""
    secrets = {HMAC_KEY_ENV: hmac_key, APP_SECRET_ENV: app_secret, VERIFY_TOKEN_ENV: verify_token}
    settings = store.settings
    if keywords is not None:
        settings = dataclasses.replace(settings, optout_keywords=keywords)
    app = create_app(
        store,
        settings=settings,
        resume=lambda session, reason: None,
        env={name: value for name, value in secrets.items() if value},
    )
    with running(app) as url:
        yield Receiver(url)


@pytest.fixture
def sessions(store: CampaignStateManager) -> CampaignStateManager:
    store.add_session("sales", "waha", "http://127.0.0.1:1", session="default")
    store.add_session("support", "evolution", "http://127.0.0.1:1", instance="evo-sales")
    store.add_session("meta", "cloud-api", "http://127.0.0.1:1", phone_number_id=PHONE_NUMBER_ID)
    return store


@pytest.fixture
def receiver(sessions: CampaignStateManager) -> Iterator[Receiver]:
    yield from _serve(
        sessions,
        hmac_key=KEY,
        app_secret=APP_SECRET,
        verify_token=VERIFY_TOKEN,
        keywords=Settings.from_env({}).optout_keywords,
    )


def entries(store: CampaignStateManager) -> list[OptOutEntry]:
    return list(store.iter_optouts())


def only(store: CampaignStateManager) -> tuple[str, str | None, str, str | None, str | None]:
    [entry] = entries(store)
    return entry.phone, entry.session, entry.source, entry.detail, entry.via_session


# --- keyword replies -------------------------------------------------------------------------


def test_waha_stop_signed__is_a_global_keyword_opt_out_via_our_session(
    receiver: Receiver, sessions: CampaignStateManager
) -> None:
    answer = receiver.waha(waha_message("Sair!"))

    assert answer.status_code == 200 and answer.json() == {
        "optouts_added": 1,
        "optouts_removed": 0,
    }
    assert only(sessions) == (PERSON, None, "inbound_keyword", "Sair", "sales")
    assert sessions.is_opted_out(PERSON) and sessions.is_opted_out(PERSON, "support")


def test_waha_stop_with_a_wrong_or_missing_signature__is_refused_and_stores_nothing(
    receiver: Receiver, sessions: CampaignStateManager
) -> None:
    assert receiver.waha(waha_message("STOP"), key="another-key").status_code == 401
    assert receiver.waha(waha_message("STOP"), key=None).status_code == 401
    assert entries(sessions) == []


def test_waha_stop_twice__stays_one_entry_with_its_first_proof(
    receiver: Receiver, sessions: CampaignStateManager
) -> None:
    assert receiver.waha(waha_message("STOP")).json()["optouts_added"] == 1
    assert receiver.waha(waha_message("parar")).json()["optouts_added"] == 0
    assert only(sessions)[3] == "STOP"


def test_waha_conversation_echo_and_group__store_nothing(
    receiver: Receiver, sessions: CampaignStateManager
) -> None:
    for payload in (
        waha_message("não quero sair daqui"),
        waha_message("STOP", from_me=True),
        waha_message("STOP", "120363025246125486@g.us"),
    ):
        answer = receiver.waha(payload)
        assert answer.status_code == 200 and "ignored" in answer.json()
    assert entries(sessions) == []


def test_evolution_messages_upsert_stop__is_an_opt_out_via_the_instance_s_session(
    receiver: Receiver, sessions: CampaignStateManager
) -> None:
    body = json.dumps(evolution_upsert("CANCELAR")).encode()
    # "webhook by events" appends the event to the URL
    assert receiver.post("/webhooks/evolution/messages-upsert", body).status_code == 200
    assert only(sessions) == (PERSON, None, "inbound_keyword", "CANCELAR", "support")


def test_an_opt_out_through_an_unmapped_gateway_session__is_still_stored(
    receiver: Receiver, sessions: CampaignStateManager
) -> None:
    payload = {**evolution_upsert("stop"), "instance": "someone-else"}
    assert receiver.post("/webhooks/evolution", json.dumps(payload).encode()).status_code == 200
    assert only(sessions) == (PERSON, None, "inbound_keyword", "stop", None)


def test_cloud_text_stop_signed__is_an_opt_out_via_the_phone_number_id_s_session(
    receiver: Receiver, sessions: CampaignStateManager
) -> None:
    assert receiver.cloud(cloud_text("Parar")).status_code == 200
    assert only(sessions) == (PERSON, None, "inbound_keyword", "Parar", "meta")


def test_cloud_webhook_with_a_wrong_missing_or_tampered_signature__is_401_and_stores_nothing(
    receiver: Receiver, sessions: CampaignStateManager
) -> None:
    assert receiver.cloud(cloud_text("STOP"), secret="not-the-app-secret").status_code == 401
    assert receiver.cloud(cloud_text("STOP"), secret=None).status_code == 401
    body = json.dumps(cloud_text("hello")).encode()
    signature = cloud_signature(APP_SECRET, body)
    tampered = body.replace(b"hello", b"STOP!")
    headers = {"X-Hub-Signature-256": signature}
    assert receiver.post("/webhooks/cloud", tampered, headers).status_code == 401
    assert entries(sessions) == []


def test_cloud_webhook_without_an_app_secret_configured__is_never_trusted(
    sessions: CampaignStateManager, caplog: pytest.LogCaptureFixture
) -> None:
    for unsigned in _serve(sessions):
        answer = unsigned.cloud(cloud_text("STOP"))
        assert answer.status_code == 401
        assert "META_APP_SECRET" in answer.json()["error"]
    assert entries(sessions) == []
    assert "set META_APP_SECRET" in caplog.text


# --- Meta's user_preferences -----------------------------------------------------------------


def test_user_preferences_stop_then_resume__adds_then_lifts_meta_s_entry(
    receiver: Receiver, sessions: CampaignStateManager
) -> None:
    stop = receiver.cloud(cloud_preference("stop", "5511987654321"))

    assert stop.status_code == 200
    assert only(sessions) == (
        PERSON,
        None,
        "meta_preferences",
        "User requested to stop marketing messages",
        "meta",
    )
    resume = receiver.cloud(cloud_preference("resume", "5511987654321", now()))
    assert resume.json() == {"optouts_added": 0, "optouts_removed": 1}
    assert entries(sessions) == [] and not sessions.is_opted_out(PERSON)


def test_user_preferences_resume__never_lifts_an_operator_s_or_a_keyword_s_entry(
    receiver: Receiver, sessions: CampaignStateManager
) -> None:
    sessions.add_optout(PERSON, source="operator", detail="asked by phone")
    receiver.waha(waha_message("STOP", "16505551234@c.us"))

    for wa_id in ("5511987654321", "16505551234"):
        answer = receiver.cloud(cloud_preference("resume", wa_id, now()))
        assert answer.json()["optouts_removed"] == 0
    assert {(e.phone, e.source) for e in entries(sessions)} == {
        (PERSON, "operator"),
        ("+16505551234", "inbound_keyword"),
    }


def test_user_preferences_resume__lifts_a_131050_entry_too(
    receiver: Receiver, sessions: CampaignStateManager
) -> None:
    sessions.add_optout(PERSON, source="cloud_131050", detail="131050 on a send")
    assert receiver.cloud(cloud_preference("resume", "5511987654321", now())).status_code == 200
    assert entries(sessions) == []


def test_user_preferences_an_old_resume_delivered_late__leaves_a_newer_stop_alone(
    receiver: Receiver, sessions: CampaignStateManager
) -> None:
    # Meta retries a delivery for days: a "resume" from an hour ago arrives after a new "stop"
    receiver.cloud(cloud_preference("stop", "5511987654321", now()))
    late = receiver.cloud(cloud_preference("resume", "5511987654321", now() - 3600))
    assert late.json()["optouts_removed"] == 0
    assert sessions.is_opted_out(PERSON)


def now() -> int:
    """Meta's timestamps: whole seconds since the epoch."""
    return int(time.time())


# --- the handshake, outages ------------------------------------------------------------------


def test_meta_handshake__echoes_the_challenge_only_with_the_verify_token(
    receiver: Receiver,
) -> None:
    url = f"{receiver.url}/webhooks/cloud"
    good = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    answer = requests.get(url, params=good, timeout=5)
    assert answer.status_code == 200 and answer.text == "1158201444"
    for bad in ({**good, "hub.verify_token": "guess"}, {**good, "hub.mode": "unsubscribe"}, {}):
        assert requests.get(url, params=bad, timeout=5).status_code == 403
    assert requests.get(f"{receiver.url}/webhooks/waha", timeout=5).status_code == 404


def test_meta_handshake_without_a_verify_token_configured__is_refused(
    sessions: CampaignStateManager,
) -> None:
    for receiver in _serve(sessions, app_secret=APP_SECRET):
        params = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
        answer = requests.get(f"{receiver.url}/webhooks/cloud", params=params, timeout=5)
        assert answer.status_code == 403


def test_a_store_outage__is_answered_503_so_the_gateway_retries(settings: Settings) -> None:
    down = CampaignStateManager(
        "postgresql+psycopg2://postgres@127.0.0.1:1/none", settings=settings
    )
    try:
        for receiver in _serve(down, hmac_key=KEY, app_secret=APP_SECRET):
            assert receiver.waha(waha_message("STOP")).status_code == 503
            assert receiver.cloud(cloud_preference("stop")).status_code == 503
            # nothing to store: no database needed, so no 503 either
            assert receiver.waha(waha_message("olá")).status_code == 200
    finally:
        down.dispose()


# --- the sandbox, end to end -----------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxControl]:
    monkeypatch.setenv("META_APP_SECRET", APP_SECRET)  # the sandbox signs as Meta would
    with (
        running_sandbox(tmp_path, webhook_timeout=5.0) as server,
        SandboxControl(server.url) as control,
    ):
        yield control


def test_sandbox_people_reply_stop_in_each_dialect__each_is_stored(
    sandbox: SandboxControl, receiver: Receiver, sessions: CampaignStateManager
) -> None:
    sandbox.add_webhook(f"{receiver.url}/webhooks/waha", "waha", hmac_key=KEY)
    sandbox.add_webhook(f"{receiver.url}/webhooks/evolution", "evolution")
    sandbox.add_webhook(f"{receiver.url}/webhooks/cloud", "cloud")

    waha = sandbox.inbound("default", "+5511987654321", "Sair", dialect="waha")
    evolution = sandbox.inbound("evo-sales", "553188887777", " STOP! ", dialect="evolution")
    cloud = sandbox.inbound(PHONE_NUMBER_ID, "16505551234", "cancelar", dialect="cloud")

    for answer in (waha, evolution, cloud):
        assert [d["status"] for d in answer["deliveries"]] == [200]
    assert {(e.phone, e.source, e.detail, e.via_session) for e in entries(sessions)} == {
        (PERSON, "inbound_keyword", "Sair", "sales"),
        ("+5531988887777", "inbound_keyword", "STOP", "support"),
        ("+16505551234", "inbound_keyword", "cancelar", "meta"),
    }


def test_sandbox_user_preference_stop_and_resume__reach_the_store(
    sandbox: SandboxControl, receiver: Receiver, sessions: CampaignStateManager
) -> None:
    sandbox.add_webhook(f"{receiver.url}/webhooks/cloud", "cloud", session=PHONE_NUMBER_ID)

    stop = sandbox.user_preference(PHONE_NUMBER_ID, PERSON, "stop")

    assert [d["status"] for d in stop["deliveries"]] == [200]
    assert only(sessions)[2:] == (
        "meta_preferences",
        "User requested to stop marketing messages",
        "meta",
    )
    sandbox.user_preference(PHONE_NUMBER_ID, PERSON, "resume")
    assert not sessions.is_opted_out(PERSON)


def test_sandbox_cloud_target_signed_with_another_secret__is_refused_and_stores_nothing(
    sandbox: SandboxControl, receiver: Receiver, sessions: CampaignStateManager
) -> None:
    sandbox.add_webhook(f"{receiver.url}/webhooks/cloud", "cloud", hmac_key="stale-secret")

    answer = sandbox.inbound(PHONE_NUMBER_ID, PERSON, "STOP")

    assert [d["status"] for d in answer["deliveries"]] == [401]
    assert entries(sessions) == []


def test_sandbox_inbound_without_a_target__is_a_clear_400(sandbox: SandboxControl) -> None:
    with pytest.raises(requests.HTTPError) as refused:
        sandbox.inbound("default", PERSON, "STOP")
    assert refused.value.response.status_code == 400
    assert "no webhook target" in refused.value.response.json()["error"]
