"""The campaign page in a real browser, against the running service with real workers and the
sandbox: an interruption (the WhatsApp session dropped) and its recovery by the session
watcher appear in the timeline as they happen, with the reason, the trigger and the recipient
it resumed from; and the sessions page shows the sender."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.dispatch import TaskSender
from campaigns.domain import CampaignStatus
from campaigns.local.stack import LocalStack, wait_until
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.state import CampaignStateManager
from tests.acceptance.conftest import processor_for
from tests.browser.conftest import by_testid, login, screenshot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(180)]

DROP_S = 4.0


def _events(driver: Any) -> list[dict[str, str]]:
    """The timeline's entries, newest first as the page lists them: their kind and the text
    of each part (``detail``, ``trigger``, ``position``; "" when absent), ``text`` the whole."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        found = []
        for e in driver.find_elements(By.CSS_SELECTOR, '#timeline [data-testid="event"]'):
            entry = {"kind": str(e.get_attribute("data-kind")), "text": str(e.text)}
            for part in ("detail", "trigger", "position"):
                inner = e.find_elements(By.CSS_SELECTOR, f'[data-testid="event-{part}"]')
                entry[part] = str(inner[0].text) if inner else ""
            found.append(entry)
        return found
    except StaleElementReferenceException:  # a poll swapped the part meanwhile
        return []


def _kinds(driver: Any) -> set[str]:
    return {e["kind"] for e in _events(driver)}


def test_an_interruption_and_its_recovery__appear_in_the_timeline_with_reason_and_trigger(
    browser: Any, web: str, stack: LocalStack, e2e_store: CampaignStateManager,
    enqueuer: TaskSender, sandbox_url: str, sandbox: SandboxControl, record: SandboxRecord,
    operator_token: str,
) -> None:  # fmt: skip
    session = "sales"
    e2e_store.add_session(session, "waha", sandbox_url, token_env="SANDBOX_TOKEN",
                          typing="false")  # fmt: skip
    stack.start_beat()  # the session watcher asks the gateway every second
    stack.start_worker(concurrency=2)
    listed = [f"+5511{960000000 + i}" for i in range(60)]
    p = processor_for(e2e_store, enqueuer, batch_size=10, min_interval=0.2, max_interval=0.3)
    cid = p.process_large_campaign_array(listed, "Olá!", session)
    login(browser, web, operator_token, then=f"/campaigns/{cid}")
    assert by_testid(browser, "campaign-title").text == f"Campaign #{cid}"
    wait_until(lambda: record.count(session) >= 12, 60, "a batch or more sent")
    wait_for(browser, lambda d: "batch_done" in _kinds(d), "a batch done in the timeline")

    sandbox.drop(session, seconds=DROP_S)
    wait_until(
        lambda: e2e_store.get_campaign(cid).status is CampaignStatus.INTERRUPTED, 15,
        "the campaign to be interrupted while the session is down",
    )  # fmt: skip
    interrupted = e2e_store.get_campaign(cid)
    resume_from = e2e_store.first_pending_position(cid)
    wait_for(browser, lambda d: "interrupted" in _kinds(d), "the interruption on the page")
    [stop] = [e for e in _events(browser) if e["kind"] == "interrupted"]
    assert "disconnected" in stop["detail"]  # the stop's kind and its reason
    assert interrupted.interrupt_reason and interrupted.interrupt_reason in stop["detail"]

    wait_for(browser, lambda d: "recovered" in _kinds(d), "the recovery on the page", 30)
    recoveries = [e for e in _events(browser) if e["kind"] == "recovered"]
    assert len(recoveries) == 1, recoveries
    assert recoveries[0]["trigger"] == "by watcher"
    assert recoveries[0]["position"] == f"resumed from position {resume_from}"
    # newest first: the recovery is listed above the interruption
    kinds = [e["kind"] for e in _events(browser)]
    assert kinds.index("recovered") < kinds.index("interrupted")
    screenshot(browser, "campaign")  # the drop and the recovery at the top of the timeline
    wait_until(
        lambda: e2e_store.get_campaign(cid).status is CampaignStatus.COMPLETED, 60,
        "the campaign to complete",
    )  # fmt: skip
    wait_for(browser, lambda d: "completed" in _kinds(d), "the completion on the page")
    assert by_testid(browser, "campaign-status").text == "completed"
    assert record.duplicates() == []
    lanes = browser.find_elements("css selector", '[data-testid="lane"]')
    assert [lane.get_attribute("data-session") for lane in lanes] == [session]
    assert by_testid(browser, "lane-sent", lanes[0]).text == "60"

    browser.get(f"{web}/sessions")
    row = wait_for(
        browser, lambda d: d.find_elements("css selector", f"#session-{session}"),
        "the session's row",
    )[0]  # fmt: skip
    assert "waha" in row.text
    screenshot(browser, "sessions")
