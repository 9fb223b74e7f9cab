"""The dashboard's pages over real loopback HTTP on a real PostgreSQL test database: the login
cookie (HttpOnly, SameSite=Strict, no token in any page), redirects without it, a read token's
pages without actions and its POSTs refused, each page and live partial rendered with data,
filters, search, keyset paging links, masked numbers unless an operator asks, and actions that
change a campaign's status. Batches are recorded, not sent (the workers are tested elsewhere);
the browser tests drive the same pages in Chromium."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest
import requests
from sqlalchemy import event

from campaigns.domain import RecipientStatus
from campaigns.state import CampaignStateManager
from campaigns.web.app import create_app
from campaigns.web.dashboard.data import LIVE_TTL
from campaigns.web.server import running
from tests.integration.test_sandbox_helpers import eventually


class Page(HTMLParser):
    """The elements of a page by ``data-testid`` and ``id``, with their attributes and text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[dict[str, Any]] = []
        self._open: list[dict[str, Any]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = {"tag": tag, **{k: v or "" for k, v in attrs}, "text": ""}
        self.found.append(element)
        if tag not in ("input", "br", "meta", "link", "img"):
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element["text"] += data

    def all(self, testid: str) -> list[dict[str, Any]]:
        return [e for e in self.found if e.get("data-testid") == testid]

    def one(self, key: str) -> dict[str, Any]:
        found = [e for e in self.found if e.get("id") == key or e.get("data-testid") == key]
        assert found, f"no element {key!r}"
        return found[0]


@pytest.fixture
def base(store: CampaignStateManager, console_session: str) -> Iterator[str]:
    app = create_app(store, resume=lambda s, r: None, env={}, enqueue=lambda *a: None)
    with running(app) as url:
        yield url


MAKER: dict[str, str] = {}


def numbers(count: int) -> list[str]:
    return [f"+5511{900000000 + i}" for i in range(count)]


def create(base: str, store: CampaignStateManager, count: int = 3) -> int:
    """A campaign made through the API (its token, named once per test, made on first use)."""
    names = {t["name"] for t in store.list_tokens()}
    if "maker" not in names:
        MAKER[base] = store.create_token("maker", "operator")
    headers = {"Authorization": f"Bearer {MAKER[base]}"}
    answer = requests.post(
        f"{base}/api/v1/campaigns", headers=headers, timeout=30,
        json={"session": "sales", "message": "Oi", "numbers": numbers(count)},
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    campaign_id: int = answer.json()["id"]
    return campaign_id


def browser(base: str, token: str) -> requests.Session:
    session = requests.Session()
    answer = session.post(f"{base}/login", data={"token": token, "next": "/"}, timeout=10)
    assert answer.status_code == 200 and answer.url == f"{base}/", answer.text
    return session


@pytest.fixture
def operator(base: str, store: CampaignStateManager) -> Iterator[requests.Session]:
    with browser(base, store.create_token("ops", "operator")) as session:
        yield session


@pytest.fixture
def reader(base: str, store: CampaignStateManager) -> Iterator[requests.Session]:
    with browser(base, store.create_token("viewer", "read")) as session:
        yield session


def test_without_a_cookie__pages_redirect_to_login_and_partials_tell_htmx(base: str) -> None:
    answer = requests.get(f"{base}/campaigns/1?status=sent", allow_redirects=False, timeout=5)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/campaigns/1%3Fstatus%3Dsent"
    for path in ("/partials/campaigns", "/partials/sessions", "/campaigns/1/live"):
        answer = requests.get(f"{base}{path}", headers={"HX-Request": "true"}, timeout=5)
        assert answer.status_code == 401 and answer.headers["HX-Redirect"] == "/login", path
    login = Page(requests.get(f"{base}/login", timeout=5).text)
    assert login.one("token")["type"] == "password" and login.one("login-submit")


def test_login__sets_a_strict_httponly_cookie_never_shown__and_logout_clears_it(
    base: str, store: CampaignStateManager
) -> None:
    token = store.create_token("ops", "operator")
    wrong = requests.post(f"{base}/login", data={"token": "cc_wrong"}, timeout=5)
    assert wrong.status_code == 401 and Page(wrong.text).one("login-error")
    session = requests.Session()
    answer = session.post(f"{base}/login", data={"token": token, "next": "//evil.example/"},
                          allow_redirects=False, timeout=5)  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    page = session.get(f"{base}/", timeout=5)
    assert page.status_code == 200 and token not in page.text
    assert "operator" in Page(page.text).one("scope")["text"]
    assert session.post(f"{base}/logout", timeout=5).url.startswith(f"{base}/login")
    again = session.get(f"{base}/", allow_redirects=False, timeout=5)
    assert again.status_code == 303
    store.revoke_token("ops")
    # a revoked token's cookie is refused at its next request
    revoked = browser(base, store.create_token("ops2", "operator"))
    store.revoke_token("ops2")
    assert revoked.get(f"{base}/", allow_redirects=False, timeout=5).status_code == 303


def test_a_read_token__sees_the_pages_without_actions_and_its_posts_are_refused(
    base: str, store: CampaignStateManager, reader: requests.Session
) -> None:
    cid = create(base, store)
    page = Page(reader.get(f"{base}/", timeout=5).text)
    row = page.one(f"campaign-{cid}")
    assert row["data-status"] == "running"
    assert not [e for e in page.found if e.get("data-testid", "").startswith("action-")]
    answer = reader.post(f"{base}/campaigns/{cid}/pause", timeout=5)
    assert answer.status_code == 403 and Page(answer.text).one("error-message")
    assert store.get_campaign(cid).status.value == "running"
    assert reader.get(f"{base}/campaigns/{cid}?full_numbers=1", timeout=5).status_code == 403
    assert reader.get(f"{base}/campaigns/{cid}/export.csv?full_numbers=1",
                      timeout=5).status_code == 403  # fmt: skip


def test_campaigns_page__shows_counts_progress_eta_and_filters(
    base: str, store: CampaignStateManager, operator: requests.Session
) -> None:
    first, second = create(base, store, 4), create(base, store, 2)
    store.pause(first, "checking")
    page = Page(operator.get(f"{base}/", timeout=5).text)
    rows = page.all("campaign-row")
    assert [r["data-campaign-id"] for r in rows][:2] == [str(second), str(first)]
    assert page.one(f"progress-{second}")["max"] == "2"
    for testid in ("count-sent", "count-failed", "count-delivered", "count-read", "eta", "rate"):
        assert len(page.all(testid)) == len(rows), testid
    assert page.one(f"pause-{second}") and page.one(f"resume-{first}")
    resume = next(e for e in page.found if e.get("hx-post") == f"/campaigns/{first}/resume")
    assert "hx-confirm" in resume
    paused = Page(operator.get(f"{base}/?status=paused&session=sales", timeout=5).text)
    assert [r["data-campaign-id"] for r in paused.all("campaign-row")] == [str(first)]
    assert operator.get(f"{base}/?status=nonsense", timeout=5).status_code == 422
    partial = operator.get(f"{base}/partials/campaigns?status=paused", timeout=5)
    assert partial.status_code == 200 and partial.text.lstrip().startswith("<tbody")
    assert [r["data-campaign-id"] for r in Page(partial.text).all("campaign-row")] == [str(first)]


def test_campaigns_list__pages_by_id_newest_first(
    base: str, store: CampaignStateManager, operator: requests.Session
) -> None:
    ids = [create(base, store, 1) for _ in range(22)]
    page = Page(operator.get(f"{base}/", timeout=10).text)
    shown = [int(r["data-campaign-id"]) for r in page.all("campaign-row")]
    assert shown == sorted(ids, reverse=True)[:20]
    older = Page(operator.get(f"{base}{page.one('next-page')['href']}", timeout=10).text)
    assert [int(r["data-campaign-id"]) for r in older.all("campaign-row")] == sorted(ids)[:2][::-1]


def test_actions__pause_resume_cancel_change_the_status_at_once(
    base: str, store: CampaignStateManager, operator: requests.Session
) -> None:
    cid = create(base, store)
    hx = {"HX-Request": "true"}
    answer = operator.post(f"{base}/campaigns/{cid}/pause", headers=hx, timeout=5)
    assert answer.status_code == 200 and answer.headers["HX-Trigger"] == "dashboard-refresh"
    assert Page(answer.text).one("flash-message")["data-ok"] == "true"
    assert store.get_campaign(cid).status.value == "paused"
    live = Page(operator.get(f"{base}/partials/campaigns", timeout=5).text)
    assert live.one(f"campaign-{cid}")["data-status"] == "paused"
    again = operator.post(f"{base}/campaigns/{cid}/pause", headers=hx, timeout=5)
    assert Page(again.text).one("flash-message")["data-ok"] == "false"  # said, not a crash
    operator.post(f"{base}/campaigns/{cid}/resume", headers=hx, timeout=5)
    assert store.get_campaign(cid).status.value == "running"
    plain = operator.post(f"{base}/campaigns/{cid}/cancel", data={"next": f"/campaigns/{cid}"},
                          allow_redirects=False, timeout=5)  # fmt: skip
    assert plain.status_code == 303 and plain.headers["location"] == f"/campaigns/{cid}"
    assert store.get_campaign(cid).status.value == "cancelled"
    foreign = operator.post(f"{base}/campaigns/{cid}/pause", timeout=5,
                            headers={"Origin": "https://evil.example"})  # fmt: skip
    assert foreign.status_code == 403


def test_campaign_page__summary_lanes_recipients_paging_and_export(
    base: str, store: CampaignStateManager, operator: requests.Session
) -> None:
    cid = create(base, store, 120)
    page = Page(operator.get(f"{base}/campaigns/{cid}", timeout=10).text)
    assert page.one("campaign-status")["text"] == "running"
    assert page.one("count-pending")["text"] == "120"
    assert [lane["data-session"] for lane in page.all("lane")] == ["sales"]
    assert page.one("activity-chart") and page.one("export-csv")
    phones = [p["text"] for p in page.all("phone")]
    assert len(phones) == 50 and all("*" in p for p in phones)
    nxt = Page(operator.get(f"{base}{page.one('recipients-next')['href']}", timeout=10).text)
    assert nxt.all("recipient")[0]["data-position"] == "51" and nxt.one("recipients-first")
    full = Page(operator.get(f"{base}/campaigns/{cid}?full_numbers=1", timeout=10).text)
    assert full.all("phone")[0]["text"] == numbers(1)[0]
    live = operator.get(f"{base}/campaigns/{cid}/live", timeout=5)
    assert Page(live.text).one("campaign-live")["hx-trigger"].startswith("every 2s")
    export = operator.get(f"{base}{page.one('export-csv')['href']}", timeout=10)
    lines = export.text.splitlines()
    assert export.headers["content-type"].startswith("text/csv") and len(lines) == 121
    assert numbers(1)[0] not in export.text


def test_campaign_page__search_by_number_and_status_filter(
    base: str, store: CampaignStateManager, operator: requests.Session
) -> None:
    cid = create(base, store, 30)
    wanted = numbers(30)[17]
    exact = Page(operator.get(f"{base}/campaigns/{cid}", params={"q": wanted}, timeout=5).text)
    assert [r["data-position"] for r in exact.all("recipient")] == ["18"]
    assert exact.one("search-summary")["text"].startswith("1 match(es)")
    suffix = Page(operator.get(f"{base}/campaigns/{cid}", params={"q": wanted[-4:]}).text)
    assert [r["data-position"] for r in suffix.all("recipient")] == ["18"]
    bad = Page(operator.get(f"{base}/campaigns/{cid}", params={"q": "12"}, timeout=5).text)
    assert bad.one("search-error") and not bad.all("recipient")
    sent = Page(operator.get(f"{base}/campaigns/{cid}?status=sent", timeout=5).text)
    assert sent.one("no-recipients") and sent.one("recipient-status")
    missing = operator.get(f"{base}/campaigns/999999", timeout=5)
    assert missing.status_code == 404 and Page(missing.text).one("error-message")


def test_sessions_page__lists_sessions_with_pacing_and_risk(
    base: str, store: CampaignStateManager, reader: requests.Session
) -> None:
    store.add_session("backup", "console", "console://local")
    store.record_session_check("backup", "disconnected", "no answer")
    page = Page(reader.get(f"{base}/sessions", timeout=5).text)
    rows = page.all("session-row")
    assert rows[0]["data-session"] == "backup"  # at risk first
    assert page.one("session-backup")["data-risk"] != "0"
    partial = reader.get(f"{base}/partials/sessions", timeout=5)
    assert {r["data-session"] for r in Page(partial.text).all("session-row")} >= {"sales", "backup"}


def test_static_files__vendored_libraries_are_served(base: str) -> None:
    for path in ("/static/vendor/htmx.min.js", "/static/vendor/chart.umd.min.js",
                 "/static/app.css", "/static/app.js"):  # fmt: skip
        assert requests.get(f"{base}{path}", timeout=5).status_code == 200, path


def test_campaign_page__timeline_newest_first_and_chart_data(
    base: str, store: CampaignStateManager, operator: requests.Session
) -> None:
    if not hasattr(store, "events"):
        pytest.skip("the store's timeline verbs are not there yet")
    cid = create(base, store, 5)
    operator.post(f"{base}/campaigns/{cid}/pause", headers={"HX-Request": "true"}, timeout=5)
    page = Page(operator.get(f"{base}/campaigns/{cid}", timeout=5).text)
    kinds = [e["data-kind"] for e in page.all("event")]
    assert kinds[0] == "paused" and kinds[-1] == "created", kinds
    chart = json.loads(page.one("activity-data")["text"])
    assert len(chart) == 120 and set(chart[0]) == {"label", "sent", "failed", "delivered", "read"}
    rows = Page(operator.get(f"{base}/", timeout=5).text)
    assert rows.one(f"campaign-{cid}")["data-status"] == "paused"


def test_recipients_table__polled_while_the_campaign_moves_then_still(
    base: str, store: CampaignStateManager, reader: requests.Session
) -> None:
    cid = create(base, store, 60)
    page = Page(reader.get(f"{base}/campaigns/{cid}", params={"status": "pending"}).text)
    rows = page.one("recipient-rows")
    assert rows["data-live"] == "yes" and rows["hx-trigger"] == "every 5s"
    polled = rows["hx-get"]
    assert polled.startswith(f"/campaigns/{cid}/recipients?status=pending&")

    # a send recorded meanwhile shows in the next poll of the same filter and page
    claim = store.claim_recipient(cid, 1, store.get_campaign(cid).run_token or "")
    assert claim is not None and store.record_outcome(claim, RecipientStatus.SENT)
    again = Page(reader.get(f"{base}{polled}", timeout=5).text)
    assert [r["data-position"] for r in again.all("recipient")][:2] == ["2", "3"]
    assert again.one("recipient-rows")["hx-get"] == polled
    searched = Page(reader.get(f"{base}/campaigns/{cid}/recipients",
                               params={"q": numbers(60)[0]}, timeout=5).text)  # fmt: skip
    assert [r["data-status"] for r in searched.all("recipient")] == ["sent"]

    # cancelled by another process (the store, as the CLI does): shown within one shared
    # period (the rows rendered for every browser are reused for LIVE_TTL seconds)
    store.cancel(cid)
    cancelled_at = time.monotonic()

    def still() -> Page | None:
        page = Page(reader.get(f"{base}{polled}", timeout=5).text)
        return page if page.one("recipient-rows")["data-live"] == "no" else None

    shown = eventually(still, timeout=LIVE_TTL + 5, what="the cancelled campaign's rows")
    assert time.monotonic() - cancelled_at < LIVE_TTL + 1
    assert "hx-trigger" not in shown.one("recipient-rows")
    missing = reader.get(f"{base}/campaigns/999999/recipients", timeout=5)
    assert missing.status_code == 404


def test_polls_within_a_period__share_one_rendering_and_check_only_the_token(
    base: str, store: CampaignStateManager, reader: requests.Session
) -> None:
    """Many browsers polling the same live parts cost one token check each; the campaign's
    view is read and rendered once a period for all of them (counted statements, not time)."""
    cid = create(base, store, 5)
    paths = [f"/campaigns/{cid}/live", f"/campaigns/{cid}/recipients?status=&q=&after=0",
             "/partials/campaigns"]  # fmt: skip
    started = time.monotonic()
    for path in paths:  # the first poll of each renders it
        assert reader.get(f"{base}{path}", timeout=5).status_code == 200
    statements: list[str] = []

    def count(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        statements.append(" ".join(sql.split()))

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        for _ in range(10):
            for path in paths:
                assert reader.get(f"{base}{path}", timeout=5).status_code == 200
        elapsed = time.monotonic() - started
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    if elapsed >= LIVE_TTL:
        pytest.skip(f"33 polls took {elapsed:.1f} s on this machine: past one shared period")
    tokens = [s for s in statements if "api_tokens" in s]
    assert len(tokens) == 30, statements
    others = [s for s in statements if "api_tokens" not in s and s not in ("SELECT 1", "select 1")]
    assert others == [], others  # no campaign read, no ledger page, no list within the period


def test_an_action_through_the_api__shows_at_the_next_poll(
    base: str, store: CampaignStateManager, reader: requests.Session
) -> None:
    """The API runs in the dashboard's process: its actions drop the views the browsers share,
    so a poll right after shows the change (not the rendering of a moment before)."""
    cid = create(base, store, 5)
    headers = {"Authorization": f"Bearer {MAKER[base]}", "HX-Request": "true"}
    for path, testid in ((f"/campaigns/{cid}/live", "campaign-live"),
                         ("/partials/campaigns", f"campaign-{cid}")):  # fmt: skip
        assert Page(reader.get(f"{base}{path}", timeout=5).text).one(testid)
    answer = requests.post(f"{base}/api/v1/campaigns/{cid}/pause", headers=headers, timeout=5)
    assert answer.status_code == 200, answer.text
    live = Page(reader.get(f"{base}/campaigns/{cid}/live", timeout=5).text)
    assert live.one("campaign-live")["data-status"] == "paused"
    rows = Page(reader.get(f"{base}/partials/campaigns", timeout=5).text)
    assert rows.one(f"campaign-{cid}")["data-status"] == "paused"
    # a campaign created through the API is in the list's next poll
    created = create(base, store, 2)
    rows = Page(reader.get(f"{base}/partials/campaigns", timeout=5).text)
    assert rows.one(f"campaign-{created}")
