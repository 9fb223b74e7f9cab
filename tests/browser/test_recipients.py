"""The campaign page's recipients table on a 100,000-row campaign, in a real browser: the status
filter, paging forward by keyset, a search by number, and the CSV export fetched through the
page's link with the browser's cookie."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import text

from campaigns.state import CampaignStateManager
from tests.browser.conftest import by_testid, login, screenshot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(240)]

SIZE = 100_000
FAILED_EVERY = 877
"""Rows failed by SQL: every 877th position (114 rows: two pages of 50 and a third of 14)."""
PAGE = 50


def _number(position: int) -> str:
    return f"+5511{930000000 + position - 1}"


@pytest.fixture
def big_campaign(e2e_store: CampaignStateManager) -> int:
    """A 100,000-recipient campaign through the store's COPY path, scheduled for tomorrow (no
    worker sends it), some of its rows then failed with an error by SQL."""
    e2e_store.add_session("sales", "console", "console://local")
    campaign = e2e_store.create_campaign(
        (_number(p) for p in range(1, SIZE + 1)), "Olá!", "sales",
        start_at=datetime.now(UTC) + timedelta(days=1),
    )  # fmt: skip
    with e2e_store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE campaign_recipients SET status = 'failed', attempts = 1,"
                " session_name = 'sales', error_code = '131026',"
                " error_message = 'Message undeliverable', finished_at = now()"
                " WHERE campaign_id = :id AND position % :every = 0"
            ),
            {"id": campaign.id, "every": FAILED_EVERY},
        )
    return campaign.id


def _rows(driver: Any) -> list[tuple[int, str, str]]:
    """The table's rows as (position, status, number shown)."""
    found = driver.find_elements("css selector", '#recipients [data-testid="recipient"]')
    return [
        (
            int(row.get_attribute("data-position")),
            str(row.get_attribute("data-status")),
            str(by_testid(driver, "phone", row).text),
        )
        for row in found
    ]


def test_recipients_filter_paging_search_and_export__on_a_100000_row_campaign(
    browser: Any, web: str, e2e_store: CampaignStateManager, big_campaign: int,
    operator_token: str,
) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    cid = big_campaign
    failed = [p for p in range(1, SIZE + 1) if p % FAILED_EVERY == 0]
    login(browser, web, operator_token, then=f"/campaigns/{cid}")
    first = _rows(browser)
    assert [r[0] for r in first] == list(range(1, PAGE + 1))  # input order, one page
    assert first[0][2] != _number(1) and "*" in first[0][2]  # masked by default

    # the status filter
    Select(browser.find_element(By.ID, "recipient-status")).select_by_value("failed")
    browser.find_element(By.ID, "recipient-submit").click()
    wait_for(browser, lambda d: "failed only" in d.find_element(By.ID, "recipients-caption").text,
             "the filtered table")  # fmt: skip
    page1 = _rows(browser)
    assert [r[0] for r in page1] == failed[:PAGE]
    assert {r[1] for r in page1} == {"failed"}
    assert "131026: Message undeliverable" in browser.find_element(By.ID, "recipients").text
    screenshot(browser, "recipients")

    # paging forward (keyset: after the last position shown), still filtered
    browser.find_element(By.ID, "recipients-next").click()
    caption = (By.ID, "recipients-caption")
    wait_for(browser, lambda d: "after position" in d.find_element(*caption).text,
             "the second page")  # fmt: skip
    page2 = _rows(browser)
    assert [r[0] for r in page2] == failed[PAGE : 2 * PAGE]
    browser.find_element(By.ID, "recipients-next").click()
    wait_for(browser, lambda d: [r[0] for r in _rows(d)] == failed[2 * PAGE :], "the last page")
    assert not browser.find_elements(By.ID, "recipients-next")  # nothing after the last page

    # a search for one number, in full (E.164), among the failed ones
    wanted = failed[-1]
    browser.get(f"{web}/campaigns/{cid}?status=failed")
    field = browser.find_element(By.ID, "recipient-search")
    field.clear()
    field.send_keys(_number(wanted))
    browser.find_element(By.ID, "recipient-submit").click()
    summary = wait_for(browser, lambda d: d.find_elements(By.ID, "search-summary"),
                       "the search's answer")[0]  # fmt: skip
    assert summary.text.startswith("1 match")
    assert [r[0] for r in _rows(browser)] == [wanted]

    # the export link of the filtered view, fetched with the browser's own cookie
    link = browser.find_element(By.ID, "export-csv")
    href = str(link.get_attribute("href"))
    assert href.startswith(f"{web}/campaigns/{cid}/export.csv") and "status=failed" in href
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    assert cookies, "the login left a cookie"
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script reads it
    answer = requests.get(href, cookies=cookies, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [int(r["position"]) for r in rows] == failed
    assert {r["status"] for r in rows} == {"failed"}
    assert all(r["phone"] != _number(int(r["position"])) for r in rows)  # masked
    # the whole ledger's export (no filter): every one of the 100,000 rows, in order
    whole = requests.get(f"{web}/campaigns/{cid}/export.csv", cookies=cookies, timeout=120)
    assert whole.status_code == 200
    lines = whole.text.splitlines()
    assert len(lines) == SIZE + 1
    assert lines[1].split(",")[0] == "1" and lines[-1].split(",")[0] == str(SIZE)
    # without the cookie: no export
    refused = requests.get(href, timeout=30, allow_redirects=False)
    assert refused.status_code in (303, 401) and not refused.text.startswith("position")
