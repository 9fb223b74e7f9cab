"""Sender pools on the command line, in process against a real PostgreSQL and a private Redis
(no worker): ``send --session a --session b`` creates one campaign over both, a bad pool prints
one line and creates nothing, ``status`` shows each lane (state, sent, share) and ``--json``
carries ``sessions`` and ``lanes``, ``list`` shows the pool and finds it by any of its sessions,
``unknowns`` names the session of each recipient, and ``sessions remove`` refuses a session an
unfinished pool uses."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from campaigns.domain import RecipientStatus, StopKind
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager
from tests.acceptance.cli_helpers import as_json, cli_store, invoker

PACING = Pacing(batch_size=8, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)
NUMBERS = [f"+5511{960000000 + i}" for i in range(8)]


@pytest.fixture
def cli(stack_env: dict[str, str]) -> Any:
    return invoker(stack_env)


@pytest.fixture
def store(database_url: str, stack_env: dict[str, str]) -> Iterator[CampaignStateManager]:
    with cli_store(database_url, stack_env, "s1", "s2") as manager:
        yield manager


@pytest.fixture
def numbers(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.txt"
    path.write_text("\n".join(NUMBERS) + "\n")
    return path


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def pooled(store: CampaignStateManager) -> tuple[int, str]:
    """A pool campaign where s1 sent 3 (one of them cut off as unknown) and s2 sent 1."""
    campaign = store.create_campaign(NUMBERS, "Hi", ["s1", "s2"], pacing=PACING)
    cid, token = campaign.id, campaign.run_token or ""
    for session, outcome in (
        ("s1", RecipientStatus.SENT),
        ("s2", RecipientStatus.SENT),
        ("s1", RecipientStatus.SENT),
        ("s1", RecipientStatus.UNKNOWN),
        ("s1", RecipientStatus.SENT),
    ):
        claim = store.claim_for_lane(cid, 1, token, session)
        assert claim is not None and store.record_outcome(claim, outcome)
    return cid, token


def test_send__with_two_sessions_creates_one_campaign_over_both(
    cli: Any, store: CampaignStateManager, numbers: Path
) -> None:
    sent = cli("send", str(numbers), "--session", "s1", "-s", "s2", "-m", "Hi")

    assert sent.exit_code == 0, sent.output
    [campaign] = store.list_campaigns()
    assert campaign.sessions == ("s1", "s2") and campaign.total_numbers == len(NUMBERS)
    assert [lane.session_name for lane in store.list_lanes(campaign.id)] == ["s1", "s2"]


@pytest.mark.parametrize(
    ("sessions", "words"),
    [
        (["s1", "s1"], "--session names session 's1' twice"),
        (["s1", ""], "--session must be a non-empty name"),
        (["s1", "nope"], "No sender session has that name"),
    ],
)
def test_send__a_bad_pool_prints_one_line_and_creates_nothing(
    cli: Any, store: CampaignStateManager, numbers: Path, sessions: list[str], words: str
) -> None:
    args = [arg for name in sessions for arg in ("--session", name)]

    line = one_error_line(cli("send", str(numbers), *args, "-m", "Hi"))

    assert words in line
    assert store.list_campaigns() == []


def test_status__shows_each_lane_with_its_state_sent_count_and_share(
    cli: Any, store: CampaignStateManager
) -> None:
    cid, token = pooled(store)
    store.mark_lane_down(cid, "s2", "Connection Closed", run_token=token)

    shown = cli("status", str(cid))

    assert shown.exit_code == 0, shown.output
    assert f"campaign {cid} on s1, s2: running" in shown.stdout
    lanes = shown.stdout.split("\nlanes\n", 1)[1]
    rows = [[cell.strip() for cell in line.split("│")] for line in lanes.splitlines()
            if "│" in line]
    assert rows == [
        ["s1", "active", "3", "75%", "4", "-"],
        ["s2", "down (disconnected)", "1", "25%", "1", "Connection Closed"],
    ]
    data = as_json(cli("status", str(cid), "--json"))
    assert data["sessions"] == ["s1", "s2"]
    assert [(lane["session"], lane["state"], lane["stop_kind"], lane["sent"], lane["share"])
            for lane in data["lanes"]] == [
        ("s1", "active", None, 3, 0.75),
        ("s2", "down", "disconnected", 1, 0.25),
    ]


def test_status__a_pool_with_every_lane_down_says_which_reconnect_resumes_it(
    cli: Any, store: CampaignStateManager
) -> None:
    cid, token = pooled(store)
    store.mark_lane_down(cid, "s1", "error 463", kind=StopKind.BLOCKED, run_token=token)
    store.mark_lane_down(cid, "s2", "Connection Closed", run_token=token)

    shown = cli("status", str(cid))

    assert "interrupted (disconnected)" in shown.stdout
    assert "resumes by itself when session s2 reconnects" in shown.stdout


def test_list__shows_the_pool_and_finds_the_campaign_by_any_of_its_sessions(
    cli: Any, store: CampaignStateManager
) -> None:
    cid, _ = pooled(store)
    store.add_session("s3", "console", "console://local")
    store.create_campaign(NUMBERS, "Hi", "s3", pacing=PACING)

    listed = cli("list", "--session", "s2")

    assert listed.exit_code == 0, listed.output
    assert "s1, s2" in listed.stdout
    assert [c["id"] for c in as_json(cli("list", "--session", "s2", "--json"))] == [cid]
    assert [c["sessions"] for c in as_json(cli("list", "--json"))] == [["s3"], ["s1", "s2"]]


def test_unknowns__names_the_session_that_claimed_each_recipient(
    cli: Any, store: CampaignStateManager
) -> None:
    cid, _ = pooled(store)

    [row] = as_json(cli("unknowns", str(cid), "--json"))

    assert row["session"] == "s1"
    assert "s1" in cli("unknowns", str(cid)).stdout


def test_sessions_remove__refuses_a_session_an_unfinished_pool_uses(
    cli: Any, store: CampaignStateManager
) -> None:
    cid, _ = pooled(store)

    assert "not finished" in one_error_line(cli("sessions", "remove", "s2"))
    store.cancel(cid)
    assert as_json(cli("sessions", "remove", "s2", "--json")) == {"removed": "s2"}


def test_export__streams_the_ledger_with_each_recipients_session(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    cid, _ = pooled(store)
    out = tmp_path / "ledger.csv"

    written = cli("export", str(cid), "--out", str(out), "--full-numbers")

    assert written.exit_code == 0, written.output
    assert f"8 recipients of campaign {cid} written to {out}" in written.stderr
    rows = list(csv.DictReader(out.open()))
    assert [r["position"] for r in rows] == [str(p) for p in range(1, 9)]
    assert [r["session"] for r in rows] == ["s1", "s2", "s1", "s1", "s1", "", "", ""]
    assert [r["status"] for r in rows][:5] == ["sent", "sent", "sent", "unknown", "sent"]
    assert rows[0]["phone"] == NUMBERS[0]
    # masked by default, filtered by status, paged along the ledger
    masked = cli("export", str(cid), "--status", "sent")
    assert masked.exit_code == 0, masked.output
    lines = list(csv.DictReader(io.StringIO(masked.stdout)))
    assert len(lines) == 4 and NUMBERS[0] not in masked.stdout
    assert [r["position"] for r in store.iter_recipients(cid, page=3)] == list(range(1, 9))
    as_lines = cli("export", str(cid), "--json", "--status", "unknown")
    assert as_lines.exit_code == 0, as_lines.output
    [unknown] = [json.loads(line) for line in as_lines.stdout.splitlines()]
    assert (unknown["position"], unknown["session"], unknown["status"]) == (4, "s1", "unknown")


def test_export__an_unknown_campaign_or_status_prints_one_line_and_writes_nothing(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    out = tmp_path / "none.csv"
    assert "No campaign" in one_error_line(cli("export", "999", "--out", str(out)))
    assert not out.exists()
    bad = cli("export", "1", "--status", "nope")
    assert bad.exit_code == 2 and "Traceback" not in bad.output
