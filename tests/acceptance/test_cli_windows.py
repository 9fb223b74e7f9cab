"""``campaigns send --window-*`` stores the campaign's send window, ``status`` shows it (text
and --json), and a bad or incomplete window prints one line naming the option and creates
nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.state import CampaignStateManager
from tests.acceptance.cli_helpers import cli_store, invoker


@pytest.fixture
def cli(stack_env: dict[str, str]) -> Any:
    return invoker(stack_env)


@pytest.fixture
def store(database_url: str, stack_env: dict[str, str]) -> Iterator[CampaignStateManager]:
    with cli_store(database_url, stack_env, "sales", window_hours="09:00-18:00") as manager:
        yield manager


@pytest.fixture
def numbers_file(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.txt"
    path.write_text("+5511900000001\n+5511900000002\n", encoding="utf-8")
    return path


def test_send__stores_the_window_and_status_shows_it(
    cli: Any, store: CampaignStateManager, numbers_file: Path
) -> None:
    sent = cli(
        "send", str(numbers_file), "-s", "sales", "-m", "Hi",
        "--window-hours", "08:00-12:00,14:00-20:00",
        "--window-days", "mon-sat",
        "--window-tz", "America/Sao_Paulo",
    )  # fmt: skip
    assert sent.exit_code == 0, sent.output
    assert "sends 08:00–12:00, 14:00–20:00 Mon–Sat America/Sao_Paulo" in sent.stderr
    cid = int(sent.stdout.strip())
    expected = {
        "tz": "America/Sao_Paulo",
        "days": [0, 1, 2, 3, 4, 5],
        "periods": [["08:00", "12:00"], ["14:00", "20:00"]],
    }
    assert store.get_campaign(cid).send_window == expected
    status = cli("status", str(cid), "--json")
    assert status.exit_code == 0, status.output
    data = json.loads(status.stdout)
    assert data["send_window"] == expected
    assert data["session_windows"] == {
        "sales": {"tz": "UTC", "days": list(range(7)), "periods": [["09:00", "18:00"]]}
    }
    shown = cli("status", str(cid))
    flat = " ".join(shown.stdout.replace("│", " ").split())  # the table wraps long lines
    assert (
        "window 08:00–12:00, 14:00–20:00 Mon–Sat America/Sao_Paulo; "
        "session sales 09:00–18:00 every day UTC ETA"
    ) in flat


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--window-hours", "8-12"], '--window-hours: "8-12" is not HH:MM-HH:MM'),
        (["--window-hours", "08:00-12:00", "--window-days", "weekdayz"], "--window-days:"),
        (["--window-hours", "08:00-12:00", "--window-tz", "Mars/Base"], "unknown time zone"),
        (["--window-days", "mon-fri"], "--window-days needs --window-hours"),
        (["--window-tz", "UTC"], "--window-tz needs --window-hours"),
        (["--window-hours", "20:00-22:00"], "never overlaps session sales"),
    ],
)
def test_send__a_bad_window_prints_one_line_and_creates_nothing(
    cli: Any, store: CampaignStateManager, numbers_file: Path, args: list[str], words: str
) -> None:
    result = cli("send", str(numbers_file), "-s", "sales", "-m", "Hi", *args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert words in lines[0]
    assert store.list_campaigns() == []
