"""Pacing profiles on the command line: ``sessions add --option pacing=... rate=... in_flight=...``
accepted for every gateway kind, a bad value refused in one line naming the option with nothing
stored, and ``sessions list`` (text and --json) showing each session's profile, defaults per kind
included. Runs in process against a real PostgreSQL (fresh database per test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from campaigns.cli.common import console
from campaigns.state import CampaignStateManager
from tests.acceptance.cli_helpers import as_json, cli_store, invoker


@pytest.fixture
def cli(stack_env: dict[str, str]) -> Any:
    return invoker(stack_env)


@pytest.fixture
def store(database_url: str, stack_env: dict[str, str]) -> Iterator[CampaignStateManager]:
    with cli_store(database_url, stack_env) as manager:
        yield manager


CLOUD = ["--gateway", "cloud-api", "--base-url", "https://graph.facebook.com",
         "--token-env", "META_TOKEN", "-o", "phone_number_id=1065"]  # fmt: skip
WAHA = ["--gateway", "waha", "--base-url", "http://waha:3000"]


def test_sessions_add__the_issues_own_command_is_accepted_and_listed(cli: Any) -> None:
    added = as_json(cli("sessions", "add", "sales", *CLOUD, "--option", "pacing=rate",
                        "--option", "rate=80", "--option", "in_flight=16", "--json"))
    assert added["options"] == {"phone_number_id": "1065", "pacing": "rate", "rate": "80",
                                "in_flight": "16"}
    assert added["pacing"] == {"kind": "rate", "rate": 80.0, "in_flight": 16,
                               "description": "rate 80/s, 16 in flight"}
    text = cli("sessions", "add", "fast", *CLOUD, "-o", "rate=1000", "-o", "in_flight=64")
    assert text.exit_code == 0 and "pacing rate 1000/s, 64 in flight" in text.stdout


def test_sessions_list__shows_each_profile_with_the_defaults_per_kind(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "width", 200)  # one line per row: the table folds at 80
    for args in (
        ["cloud", *CLOUD],
        ["slow-cloud", *CLOUD, "-o", "pacing=human"],
        ["waha", *WAHA],
        ["waha-rate", *WAHA, "-o", "pacing=rate", "-o", "rate=2", "-o", "in_flight=1"],
        ["evo", "--gateway", "evolution", "--base-url", "http://evo:8080"],
        ["local", "--gateway", "console", "--base-url", "console://local"],
    ):
        assert cli("sessions", "add", *args).exit_code == 0

    listed = {s["name"]: s["pacing"] for s in as_json(cli("sessions", "list", "--json"))}
    assert {name: p["description"] for name, p in listed.items()} == {
        "cloud": "rate 80/s, 32 in flight",  # 80/s at a 250 ms round trip needs 20
        "evo": "human",
        "local": "human",
        "slow-cloud": "human",
        "waha": "human",
        "waha-rate": "rate 2/s, 1 in flight",
    }
    assert listed["waha"] == {"kind": "human", "rate": None, "in_flight": 1,
                              "description": "human"}
    table = cli("sessions", "list")
    assert table.exit_code == 0
    assert "pacing" in table.stdout and "rate 80/s, 32 in flight" in table.stdout
    assert "rate 2/s, 1 in flight" in table.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([*CLOUD, "-o", "pacing=fast"], "option pacing must be human or rate, got 'fast'"),
        ([*CLOUD, "-o", "rate=0"], "option rate must be above 0"),
        ([*CLOUD, "-o", "rate=nan"], "option rate must be a finite number"),
        ([*CLOUD, "-o", "in_flight=2.5"], "option in_flight must be a whole number"),
        ([*WAHA, "-o", "rate=80"], "option rate needs pacing=rate"),
        ([*CLOUD, "-o", "pacing=human", "-o", "in_flight=4"], "option in_flight needs pacing=rate"),
    ],
)
def test_sessions_add__a_bad_pacing_option_prints_one_line_and_stores_nothing(
    cli: Any, store: CampaignStateManager, args: list[str], expected: str
) -> None:
    result = cli("sessions", "add", "s1", *args)

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and expected in line and "nothing was stored" in line
    assert store.list_sessions() == []


def test_sessions_list__shows_caps_warm_up_portfolio_and_window(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "width", 200)
    assert cli("sessions", "add", "sales", *WAHA, "-o", "cap_day=1000", "-o", "cap_hour=100",
               "-o", "window_hours=08:00-20:00", "-o", "window_days=mon-sat",
               "-o", "window_tz=America/Sao_Paulo").exit_code == 0  # fmt: skip
    assert cli("sessions", "add", "meta", *CLOUD, "-o", "portfolio=acme").exit_code == 0

    listed = {s["name"]: s for s in as_json(cli("sessions", "list", "--json"))}
    assert listed["sales"]["caps"] == "1000/day, 100/h"
    assert "America/Sao_Paulo" in listed["sales"]["window"]
    assert listed["meta"]["caps"] == "portfolio acme 250 recipients/day"  # a new portfolio's
    assert listed["meta"]["window"] is None
    table = cli("sessions", "list").stdout
    assert "human; 1000/day, 100/h; 08:00" in table
