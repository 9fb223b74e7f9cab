"""Consent and content end to end (issue 12): real `celery worker` processes, PostgreSQL, a
private Redis and the sandbox gateway; every claim is read from the sandbox's own record and
the ledger.

- opted-out numbers are never sent: listed before the start (global, and for the campaign's
  session), added by the operator while the campaign runs, and arriving as a person's "Sair!"
  through the sandbox's inbound webhook into the webhook receiver while it runs;
- variants, spintax and ``{name|cliente}``: each recorded text is the render of the label the
  ledger stored for that recipient;
- media by URL (a loopback HTTP server answers the creation's HEAD check): recorded with its
  file and the personalised caption;
- retry: the follow-up sends exactly the failed set once, with the same variants, leaving out a
  number opted out meanwhile; a second retry has nothing left to retry.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from campaigns import content
from campaigns.dispatch import TaskSender
from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.errors import InvalidArgument
from campaigns.local.stack import LocalStack, wait_until
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.state import CampaignStateManager
from campaigns.web.app import create_app
from campaigns.web.server import running
from tests.acceptance.conftest import processor_for

pytestmark = pytest.mark.slow

HMAC_KEY = "waha-webhook-key"
NO_TYPING = {"typing": "false"}


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+5511{950000000 + start + i}" for i in range(count)]


def completed(store: CampaignStateManager, campaign_id: int, timeout: float = 60) -> None:
    wait_until(
        lambda: store.get_campaign(campaign_id).status is CampaignStatus.COMPLETED,
        timeout,
        f"campaign {campaign_id} completed",
    )


def ledger(store: CampaignStateManager, campaign_id: int) -> dict[str, dict[str, Any]]:
    """Each number's ledger row, with the variant label the export reads (``variant``)."""
    labels = {r["position"]: r["variant"] for r in store.iter_recipients(campaign_id)}
    return {
        r["phone"]: {**r, "variant": labels[r["position"]]} for r in store.recipients(campaign_id)
    }


def expected_text(store: CampaignStateManager, campaign_id: int, row: dict[str, Any]) -> str:
    """What ``row``'s recipient should read: its stored label rendered, computed here."""
    campaign = store.get_campaign(campaign_id)
    plan = content.plan(campaign.message, campaign.variants)
    return content.render(
        plan,
        campaign.columns,
        row["variant"],
        row["variables"],
        campaign_id=campaign_id,
        position=row["position"],
    )


@pytest.fixture
def webhook_receiver(e2e_store: CampaignStateManager) -> Iterator[str]:
    """The web service (its webhook routes, as `campaigns web` serves them) in a thread,
    storing opt-outs in the test's database; its base URL."""
    app = create_app(
        e2e_store,
        resume=lambda session, reason: None,
        env={"WAHA_WEBHOOK_HMAC_KEY": HMAC_KEY},
    )
    with running(app) as url:
        yield url


JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")  # SOI, JFIF APP0, EOI


class _Files(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def _answer(self, *, with_body: bool) -> None:
        if self.path != "/promo.jpg":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(JPEG)))
        self.end_headers()
        if with_body:
            self.wfile.write(JPEG)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def image_url() -> Iterator[str]:
    """A small JPEG served over loopback: the creation's HEAD check reaches it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/promo.jpg"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_opted_out_numbers_are_never_sent__listed_before__added_mid_campaign__inbound_stop(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender,
    webhook_receiver: str,
) -> None:  # fmt: skip
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN", **NO_TYPING)
    e2e_store.add_session("support", "waha", sandbox_url, token_env="SANDBOX_TOKEN", **NO_TYPING)
    listed = numbers(40)
    everywhere, for_sales, for_support = listed[2], listed[6], listed[9]
    mid_campaign, says_stop = listed[30], listed[35]
    e2e_store.add_optout(everywhere, detail="asked by phone")
    e2e_store.add_optout(for_sales, session="sales")
    e2e_store.add_optout(for_support, session="support")  # another session's list only
    sandbox.add_webhook(f"{webhook_receiver}/webhooks/waha", "waha", hmac_key=HMAC_KEY)
    stack.start_worker(concurrency=4)
    p = processor_for(e2e_store, enqueuer, batch_size=10, min_interval=0.1, max_interval=0.2)
    cid = p.process_large_campaign_array(listed, "Olá, tudo bem?", "sales")

    wait_until(lambda: record.count() >= 3, 30, "the first sends")
    rows = ledger(e2e_store, cid)
    # still ahead of the lane: what follows is about numbers not yet claimed
    assert rows[mid_campaign]["status"] == rows[says_stop]["status"] == RecipientStatus.PENDING
    assert e2e_store.add_optout(mid_campaign, detail="asked while the campaign ran")
    answer = sandbox.inbound("sales", says_stop, "Sair!", dialect="waha")
    assert [d["status"] for d in answer["deliveries"]] == [200]
    assert e2e_store.is_opted_out(says_stop, "sales")
    assert e2e_store.get_campaign(cid).status is CampaignStatus.RUNNING
    completed(e2e_store, cid)

    opted_out = {everywhere, for_sales, mid_campaign, says_stop}
    recorded = Counter(m.e164 for m in record.messages())
    assert set(recorded) & opted_out == set()  # never at the gateway
    assert set(recorded) == set(listed) - opted_out  # everyone else, the other list's included
    assert max(recorded.values()) == 1
    rows = ledger(e2e_store, cid)
    for number in opted_out:
        assert (rows[number]["status"], rows[number]["error_code"]) == (
            RecipientStatus.SKIPPED,
            "opted_out",
        ), number
    assert rows[for_support]["status"] == RecipientStatus.SENT
    assert {n for n, r in rows.items() if r["status"] == RecipientStatus.SENT} == set(recorded)
    entries = {(e.phone, e.session): e for e in e2e_store.iter_optouts()}
    stop = entries[(says_stop, None)]  # a person's word is global
    assert (stop.source, stop.detail, stop.via_session) == ("inbound_keyword", "Sair", "sales")
    assert entries[(mid_campaign, None)].source == "operator"
    done = e2e_store.get_campaign(cid)
    assert (done.success_count, done.skipped_count, done.failed_count) == (36, 4, 0)
    assert done.processed_numbers == 40
    assert e2e_store.check_invariants(cid) == []


def test_variants_spintax_and_fallback__each_recorded_text_is_its_stored_label_rendered(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    record: SandboxRecord, enqueuer: TaskSender, tmp_path: Path,
) -> None:  # fmt: skip
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN", **NO_TYPING)
    listed = numbers(45, start=100)
    names = ["" if i % 4 == 0 else f"Pessoa{i}" for i in range(len(listed))]
    csv = tmp_path / "list.csv"
    csv.write_text(
        "phone,name\n" + "".join(f"{n},{name}\n" for n, name in zip(listed, names, strict=True))
    )
    message = "{Olá|Oi|Bom dia} {name|cliente}, temos novidades."
    variants = ["Oi {name|cliente}! Veja a oferta.", "{name|cliente}, {sua oferta chegou|veja}."]
    stack.start_worker(concurrency=4)
    p = processor_for(e2e_store, enqueuer, batch_size=15, min_interval=0.05, max_interval=0.1)
    cid = p.process_large_campaign_array(
        csv, message, "sales", variants=variants, legal_basis="consent", legal_note="opt-in form"
    )
    completed(e2e_store, cid)

    campaign = e2e_store.get_campaign(cid)
    assert campaign.columns == ("name",)
    plan = content.plan(message, variants)
    rows = ledger(e2e_store, cid)
    texts = {m.e164: m.text for m in record.messages()}
    assert len(record.messages()) == len(texts) == len(listed)
    for number, name in zip(listed, names, strict=True):
        row = rows[number]
        # the label is the campaign's deterministic choice, and the text its rendering
        assert row["variant"] == content.choose(plan, campaign.columns, cid, row["position"])
        assert texts[number] == expected_text(e2e_store, cid, row), number
        assert (name or "cliente") in texts[number]
        assert "{" not in texts[number] and "}" not in texts[number]
        assert "|" not in texts[number]
    used = Counter(row["variant"].split(":")[0] for row in rows.values())
    assert set(used) == {"1", "2", "3"}, used
    greetings = {t.split(" ")[0] for t in texts.values() if t.endswith("temos novidades.")}
    assert {"Olá", "Oi", "Bom"} <= greetings  # every option of the spintax group went out
    assert e2e_store.check_invariants(cid) == []


@pytest.mark.parametrize("gateway", ["cloud-api", "waha"])
def test_media_with_a_personalised_caption__recorded_with_its_file_and_caption(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    record: SandboxRecord, enqueuer: TaskSender, image_url: str, gateway: str,
) -> None:  # fmt: skip
    options = {"phone_number_id": "meta"} if gateway == "cloud-api" else NO_TYPING
    e2e_store.add_session("sender", gateway, sandbox_url, token_env="SANDBOX_TOKEN", **options)
    listed = numbers(8, start=200)
    entries = [{"phone": n, "name": f"Cliente {i}"} for i, n in enumerate(listed)]
    stack.start_worker(concurrency=4)
    p = processor_for(e2e_store, enqueuer, batch_size=5, min_interval=0.05, max_interval=0.1)
    cid = p.process_large_campaign_array(
        entries, "Oferta para {name}: 20% off", "sender", media={"kind": "image", "url": image_url}
    )
    completed(e2e_store, cid)

    assert e2e_store.get_campaign(cid).media == {
        "kind": "image", "url": image_url, "mime": "image/jpeg", "filename": None,
    }  # fmt: skip
    sent = {m.e164: m for m in record.messages()}
    assert len(sent) == len(record.messages()) == len(listed)
    for i, number in enumerate(listed):
        media = sent[number].media
        assert media is not None, number
        assert (media["kind"], media["url"], media["mime"]) == ("image", image_url, "image/jpeg")
        assert sent[number].text == f"Oferta para Cliente {i}: 20% off"
    assert e2e_store.check_invariants(cid) == []


def test_retry__the_follow_up_sends_exactly_the_failed_set_once_with_the_same_variants(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender,
) -> None:  # fmt: skip
    e2e_store.add_session("meta", "cloud-api", sandbox_url, token_env="SANDBOX_TOKEN",
                          phone_number_id="meta", pacing="human")  # fmt: skip
    listed = numbers(20, start=300)
    failing = {listed[i] for i in (1, 6, 10, 14, 18)}
    sandbox.reject([n.lstrip("+") for n in failing])  # "not on WhatsApp": 131026
    entries = [{"phone": n, "name": f"N{i}"} for i, n in enumerate(listed)]
    stack.start_worker(concurrency=4)
    p = processor_for(e2e_store, enqueuer, batch_size=6, min_interval=0.05, max_interval=0.1)
    cid = p.process_large_campaign_array(
        entries, "{Olá|Oi|Bom dia} {name}", "meta", variants=["Oi {name}, tudo bem?"]
    )
    completed(e2e_store, cid)

    rows = ledger(e2e_store, cid)
    failed = {n for n, r in rows.items() if r["status"] == RecipientStatus.FAILED}
    assert failed == failing
    assert {rows[n]["error_code"] for n in failed} == {"131026"}
    assert Counter(m.e164 for m in record.messages()) == Counter(set(listed) - failing)
    assert e2e_store.check_invariants(cid) == []

    left_out = sorted(failing)[0]
    e2e_store.add_optout(left_out, detail="answered STOP on another channel")
    sandbox.reset()  # the numbers are on WhatsApp now
    before = max(m.id for m in record.messages())
    retry = p.retry_campaign(cid)
    assert (retry.retry_of, retry.recipients, retry.opted_out, retry.already_retried) == (
        cid, len(failing) - 1, 1, 0,
    )  # fmt: skip
    followup = retry.campaign_id
    completed(e2e_store, followup)

    again = [m for m in record.messages() if m.id > before]
    assert Counter(m.e164 for m in again) == Counter(failing - {left_out})  # each once
    retried = ledger(e2e_store, followup)
    assert set(retried) == failing - {left_out}
    assert e2e_store.get_campaign(followup).retry_of == cid
    texts = {m.e164: m.text for m in again}
    for number, row in retried.items():
        assert row["status"] == RecipientStatus.SENT
        assert row["variant"] == rows[number]["variant"]  # the variant it was given first
        assert row["variables"] == rows[number]["variables"]
        # the text it would have read the first time
        assert texts[number] == expected_text(e2e_store, cid, rows[number])
        assert texts[number] == expected_text(e2e_store, followup, row)
    assert e2e_store.check_invariants(followup) == []
    assert e2e_store.check_invariants(cid) == []
    original = ledger(e2e_store, cid)  # the original's record of its list is unchanged
    assert {n for n, r in original.items() if r["status"] == RecipientStatus.FAILED} == failing

    with pytest.raises(InvalidArgument, match="nothing to retry"):
        p.retry_campaign(cid)
    assert len(record.messages()) == len(listed) - 1  # the left-out one never went out
