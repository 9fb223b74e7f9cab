"""The kind of a stop on the command line, in process against a real PostgreSQL and a private
Redis (no worker): ``status`` and ``list`` say who resumes an interrupted campaign, ``--json``
carries ``interrupt_kind`` and ``resume_at``, ``recover`` without an id leaves a blocked campaign
alone, and ``resume ID`` is what restarts it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from campaigns.domain import CampaignStatus, StopKind
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager
from tests.acceptance.cli_helpers import as_json, cli_store, invoker

PACING = Pacing(batch_size=2, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)
TIMELOCK = "WhatsApp refused to send (error 463: reach-out timelock)"


@pytest.fixture
def cli(stack_env: dict[str, str]) -> Any:
    return invoker(stack_env)


@pytest.fixture
def store(database_url: str, stack_env: dict[str, str]) -> Iterator[CampaignStateManager]:
    with cli_store(database_url, stack_env, "sales") as manager:
        yield manager


def interrupted(
    store: CampaignStateManager, reason: str, kind: StopKind, resume_at: datetime | None = None
) -> int:
    campaign = store.create_campaign(
        [f"+5511{940000000 + i}" for i in range(3)], "Hi", "sales", pacing=PACING
    )
    assert store.mark_interrupted(campaign.id, reason, kind=kind, resume_at=resume_at)
    return campaign.id


def test_status__a_blocked_campaign_says_only_the_operator_resumes_it(
    cli: Any, store: CampaignStateManager
) -> None:
    cid = interrupted(store, TIMELOCK, StopKind.BLOCKED)

    shown = cli("status", str(cid))

    assert shown.exit_code == 0, shown.output
    assert f"campaign {cid} on sales: interrupted (blocked)" in shown.stdout
    assert f"resume with `campaigns resume {cid}` once fixed" in shown.stdout
    assert "error 463" in shown.stdout
    data = as_json(cli("status", str(cid), "--json"))
    assert (data["interrupt_kind"], data["resume_at"]) == ("blocked", None)


def test_status_and_list__a_limited_campaign_says_until_when(
    cli: Any, store: CampaignStateManager
) -> None:
    until = datetime.now(UTC) + timedelta(hours=2)
    cid = interrupted(store, "WhatsApp capped the number (error 475)", StopKind.LIMITED, until)
    local = until.astimezone()
    # the date only when it is not today: two hours ahead is tomorrow after 22:00
    today = local.date() == datetime.now().astimezone().date()
    clock = local.strftime("%H:%M" if today else "%Y-%m-%d %H:%M")

    shown = cli("status", str(cid)).stdout
    listed = cli("list").stdout

    assert f"interrupted (limited until {clock}): WhatsApp capped the number" in shown
    assert "resumes by itself" in shown
    assert "limited" in listed
    [row] = as_json(cli("list", "--json"))
    assert row["interrupt_kind"] == "limited"
    assert datetime.fromisoformat(row["resume_at"]) == until


def test_status__a_limit_ending_another_day_names_the_date(
    cli: Any, store: CampaignStateManager
) -> None:
    until = datetime.now(UTC) + timedelta(days=3)
    cid = interrupted(store, "WhatsApp capped the number (error 475)", StopKind.LIMITED, until)
    clock = until.astimezone().strftime("%Y-%m-%d %H:%M")

    assert f"interrupted (limited until {clock})" in cli("status", str(cid)).stdout


def test_list__shows_each_stop_kind_and_no_kind_for_campaigns_not_interrupted(
    cli: Any, store: CampaignStateManager
) -> None:
    dropped = interrupted(store, "session sales is not connected (STOPPED)", StopKind.DISCONNECTED)
    blocked = interrupted(store, TIMELOCK, StopKind.BLOCKED)
    paused = interrupted(store, "down", StopKind.DISCONNECTED)
    store.pause(paused)

    rows = {c["id"]: c for c in as_json(cli("list", "--json"))}
    table = cli("list").stdout

    assert rows[dropped]["interrupt_kind"] == "disconnected"
    assert rows[blocked]["interrupt_kind"] == "blocked"
    assert rows[paused]["interrupt_kind"] is None  # the kind lives only as long as the stop
    assert "(disconnected)" in table and "(blocked)" in table
    shown = cli("status", str(dropped)).stdout
    assert "resumes by itself when session sales reconnects" in shown


def test_recover_without_id_leaves_a_blocked_campaign__resume_id_restarts_it(
    cli: Any, store: CampaignStateManager
) -> None:
    cid = interrupted(store, TIMELOCK, StopKind.BLOCKED)

    swept = as_json(cli("recover", "--json"))  # the sweep and a watcher cycle, by hand

    assert swept["resumed"] == []
    assert store.get_campaign(cid).status is CampaignStatus.INTERRUPTED
    resumed = as_json(cli("resume", str(cid), "--json"))
    assert (resumed["status"], resumed["position"]) == ("running", 1)
    campaign = store.get_campaign(cid)
    assert (campaign.status, campaign.interrupt_kind) == (CampaignStatus.RUNNING, None)
