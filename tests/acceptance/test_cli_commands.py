"""The command line against a real PostgreSQL (fresh database per test), in process: every
command's text and --json output, exit codes, and bad input that prints one clear line and
creates nothing. Commands that talk to workers are in test_cli_workers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from campaigns.cli import app
from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.local.stack import LocalStack
from campaigns.masking import mask_phone
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager
from campaigns.store import db
from tests.acceptance.cli_helpers import as_json, cli_store, one_error_line

PACING = Pacing(batch_size=2, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)


@pytest.fixture
def cli_env(stack_env: dict[str, str]) -> dict[str, str]:
    return stack_env


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Any:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), env=cli_env, input=input)

    return invoke


@pytest.fixture
def store(database_url: str, cli_env: dict[str, str]) -> Iterator[CampaignStateManager]:
    with cli_store(database_url, cli_env) as manager:
        yield manager


def campaign(store: CampaignStateManager, count: int = 4, session: str = "sales") -> int:
    if session not in {s.name for s in store.list_sessions()}:
        store.add_session(session, "console", "console://local")
    numbers = [f"+5511{900000000 + i}" for i in range(count)]
    return store.create_campaign(numbers, "Hi", session, pacing=PACING).id


# ---------------------------------------------------------------------------------- db


def test_db_upgrade__migrates_an_empty_database_and_downgrade_reverts_it(
    empty_database_url: str, cli_env: dict[str, str]
) -> None:
    runner = CliRunner()
    env = {**cli_env, "DATABASE_URL": empty_database_url}
    up = as_json(runner.invoke(app, ["db", "upgrade", "--json"], env=env))
    assert up["from"] is None and up["to"] == db.current_revision(empty_database_url)
    assert up["to"] is not None
    down = as_json(runner.invoke(app, ["db", "downgrade", "base", "--json"], env=env))
    assert down == {"from": up["to"], "to": None}
    again = runner.invoke(app, ["db", "upgrade"], env=env)
    assert again.exit_code == 0 and "database at revision" in again.stdout


# ---------------------------------------------------------------------------------- sessions


def test_sessions_add_list_remove__round_trip_with_json(cli: Any) -> None:
    added = as_json(
        cli(
            "sessions",
            "add",
            "meta",
            "--gateway",
            "cloud-api",
            "--base-url",
            "https://graph.facebook.com/v23.0",
            "--token-env",
            "META_TOKEN",
            "--option",
            "phone_number_id=1234",
            "--json",
        )
    )
    assert added["token_env"] == "META_TOKEN"
    assert added["options"] == {"phone_number_id": "1234"}
    cli("sessions", "add", "evo", "--gateway", "evolution", "--base-url", "http://evo:8080")
    listed = as_json(cli("sessions", "list", "--json"))
    assert [s["name"] for s in listed] == ["evo", "meta"]
    assert listed[0]["options"] == {"instance": "evo"}
    text_list = cli("sessions", "list")
    assert "meta" in text_list.stdout and "cloud-api" in text_list.stdout
    assert as_json(cli("sessions", "remove", "evo", "--json")) == {"removed": "evo"}
    assert [s["name"] for s in as_json(cli("sessions", "list", "--json"))] == ["meta"]


def test_sessions_add__a_token_value_in_options_is_refused_and_nothing_stored(
    cli: Any, store: CampaignStateManager
) -> None:
    line = one_error_line(
        cli(
            "sessions",
            "add",
            "w",
            "--gateway",
            "waha",
            "--base-url",
            "http://waha:3000",
            "--option",
            "api_token=s3cret",
        )
    )
    assert "tokens are never stored" in line
    assert store.list_sessions() == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--gateway", "cloud-api", "--base-url", "https://g"], "phone_number_id"),
        (["--gateway", "waha", "--base-url", "not-a-url"], "--base-url must be an http(s) URL"),
        (
            ["--gateway", "waha", "--base-url", "http://w", "--token-env", "MY TOKEN"],
            "NAME of an environment variable",
        ),
        # a mistyped option used to be stored, and every batch on the session failed with it
        (
            ["--gateway", "waha", "--base-url", "http://w", "-o", "check_exist=true"],
            "does not know option check_exist",
        ),
        (
            ["--gateway", "waha", "--base-url", "http://w", "-o", "check_exists=maybe"],
            "check_exists must be true or false",
        ),
        (
            ["--gateway", "cloud-api", "--base-url", "https://g", "-o", "phone_number_id=1",
             "-o", "api_versoin=v25.0"],
            "does not know option api_versoin",
        ),
    ],
)
def test_sessions_add__bad_settings_print_one_line_and_store_nothing(
    cli: Any, store: CampaignStateManager, args: list[str], expected: str
) -> None:
    assert expected in one_error_line(cli("sessions", "add", "s1", *args))
    assert store.list_sessions() == []


def test_sessions_add__twice_the_same_name_is_refused(cli: Any) -> None:
    cli("sessions", "add", "c", "--gateway", "console", "--base-url", "console://x")
    line = one_error_line(
        cli("sessions", "add", "c", "--gateway", "console", "--base-url", "console://x")
    )
    assert "exists already" in line


def test_sessions_remove__unknown_session_and_session_in_use(
    cli: Any, store: CampaignStateManager
) -> None:
    assert "No sender session has that name" in one_error_line(cli("sessions", "remove", "nope"))
    campaign(store)
    assert "not finished" in one_error_line(cli("sessions", "remove", "sales"))


def test_sessions_check__connected_session_exits_0_and_stores_the_result(
    cli: Any, store: CampaignStateManager
) -> None:
    store.add_session("sales", "console", "console://local")
    checked = as_json(cli("sessions", "check", "sales", "--json"))
    assert checked == [{"name": "sales", "connected": True, "state": "console", "detail": ""}]
    session = store.get_session("sales")
    assert session.connection_status == "connected" and session.last_checked_at is not None


def test_sessions_check__dropped_sandbox_session_exits_1_and_stores_its_state(
    cli: Any,
    store: CampaignStateManager,
    stack: LocalStack,
    record_path: Path,
    cli_env: dict[str, str],
) -> None:
    from campaigns.sandbox import SandboxControl

    url = stack.start_sandbox(record_path, api_key=cli_env["SANDBOX_TOKEN"])
    store.add_session("waha1", "waha", url, token_env="SANDBOX_TOKEN")
    store.add_session("nokey", "waha", url, token_env="UNSET_TOKEN_VARIABLE")
    assert as_json(cli("sessions", "check", "waha1", "--json"))[0]["connected"] is True
    with SandboxControl(url) as control:
        control.drop("waha1")
    result = cli("sessions", "check")
    assert result.exit_code == 1
    assert "waha1: NOT connected (STOPPED)" in result.stdout
    assert "nokey: NOT connected (no_token)" in result.stdout
    assert "UNSET_TOKEN_VARIABLE" in result.stdout
    assert store.get_session("waha1").connection_status == "STOPPED"


def test_sessions_check__unknown_session(cli: Any) -> None:
    assert "No sender session" in one_error_line(cli("sessions", "check", "ghost"))


# ---------------------------------------------------------------------------------- send


@pytest.fixture
def numbers_file(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.txt"
    path.write_text("+5511900000001\n+5511900000002\n", encoding="utf-8")
    return path


def test_send__unknown_session_prints_one_line_and_creates_nothing(
    cli: Any, store: CampaignStateManager, numbers_file: Path
) -> None:
    line = one_error_line(cli("send", str(numbers_file), "-m", "Hi", "-s", "ghost"))
    assert "No sender session has that name" in line and "ghost" in line
    assert store.list_campaigns() == []


def test_send__missing_number_file_prints_one_line_and_creates_nothing(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    store.add_session("sales", "console", "console://local")
    line = one_error_line(cli("send", str(tmp_path / "nope.csv"), "-m", "Hi", "-s", "sales"))
    assert "does not exist" in line and "nope.csv" in line
    assert store.list_campaigns() == []


def test_send__number_file_not_utf8_prints_one_line_and_creates_nothing(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    store.add_session("sales", "console", "console://local")
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("phone,name\n+5511900000001,Jos\xe9\n".encode("latin-1"))
    line = one_error_line(cli("send", str(latin), "-m", "Hi", "-s", "sales"))
    assert "UTF-8" in line
    assert store.list_campaigns() == []


def test_send__message_file_not_utf8_prints_one_line_and_creates_nothing(
    cli: Any, store: CampaignStateManager, numbers_file: Path, tmp_path: Path
) -> None:
    store.add_session("sales", "console", "console://local")
    message = tmp_path / "message.txt"
    message.write_bytes("Olá".encode("latin-1"))
    line = one_error_line(
        cli("send", str(numbers_file), "--message-file", str(message), "-s", "sales")
    )
    assert "is not UTF-8" in line
    assert store.list_campaigns() == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-m", "   "], "the message is empty"),
        (["-m", "x" * 4097], "over WhatsApp's limit"),
        (["-m", "Hi", "--min-interval", "5", "--max-interval", "1"], "is above"),
    ],
)
def test_send__bad_message_or_pacing_prints_one_line_and_creates_nothing(
    cli: Any,
    store: CampaignStateManager,
    numbers_file: Path,
    args: list[str],
    expected: str,
) -> None:
    store.add_session("sales", "console", "console://local")
    assert expected in one_error_line(cli("send", str(numbers_file), "-s", "sales", *args))
    assert store.list_campaigns() == []


def test_send__unknown_region_is_a_usage_error_and_creates_nothing(
    cli: Any, store: CampaignStateManager, numbers_file: Path
) -> None:
    store.add_session("sales", "console", "console://local")
    result = cli("send", str(numbers_file), "-s", "sales", "-m", "Hi", "--region", "XX")
    assert result.exit_code == 2
    assert "'XX' is not a region" in result.stderr
    assert store.list_campaigns() == []


def test_send__file_without_any_valid_number_creates_nothing(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    store.add_session("sales", "console", "console://local")
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nworld\n", encoding="utf-8")
    assert "valid phone number" in one_error_line(cli("send", str(junk), "-m", "Hi", "-s", "sales"))
    assert store.list_campaigns() == []


# ---------------------------------------------------------------------------------- reading


def test_list__filters_by_status_and_session(cli: Any, store: CampaignStateManager) -> None:
    first = campaign(store)
    second = campaign(store, session="support")
    store.pause(second)
    everything = as_json(cli("list", "--json"))
    assert [c["id"] for c in everything] == [second, first]
    assert "message" not in everything[0] and everything[0]["message_length"] == 2
    paused = as_json(cli("list", "--status", "paused", "--json"))
    assert [c["id"] for c in paused] == [second]
    assert [c["id"] for c in as_json(cli("list", "--session", "sales", "--json"))] == [first]
    assert cli("list", "--status", "sleeping").exit_code == 2
    table = cli("list")
    assert "support" in table.stdout and "paused" in table.stdout


def test_status__counters_batch_eta_and_last_error(cli: Any, store: CampaignStateManager) -> None:
    cid = campaign(store, count=5)
    store.mark_interrupted(cid, "session sales is not connected (STOPPED)")
    data = as_json(cli("status", str(cid), "--json"))
    assert data["status"] == "interrupted"
    assert data["ledger"]["pending"] == 5 and data["remaining"] == 5
    assert data["current_batch"] == 1 and data["total_batches"] == 3
    assert data["eta_seconds"] == 0.0  # no pacing in this campaign
    assert data["last_error"] == "session sales is not connected (STOPPED)"
    shown = cli("status", str(cid))
    assert "interrupted" in shown.stdout and "STOPPED" in shown.stdout
    assert "1/3" in shown.stdout


@pytest.mark.parametrize(
    "command", ["status", "unknowns", "pause", "resume", "cancel", "recover", "watch"]
)
def test_campaign_commands__unknown_id_prints_one_line(cli: Any, command: str) -> None:
    line = one_error_line(cli(command, "424242"))
    assert "No campaign has that id" in line and "424242" in line


def test_unknowns__masked_by_default_full_on_request(cli: Any, store: CampaignStateManager) -> None:
    cid = campaign(store)
    token = store.get_campaign(cid).run_token
    assert token is not None
    claim = store.claim_recipient(cid, 1, token)
    assert claim is not None
    store.record_outcome(
        claim,
        RecipientStatus.UNKNOWN,
        error_code="timeout",
        error_message="read timeout: the gateway may have sent it",
    )
    masked = as_json(cli("unknowns", str(cid), "--json"))
    assert masked == [
        {
            "position": claim.position,
            "batch": 1,
            "phone": mask_phone("+5511900000000"),
            "session": "sales",  # the session that claimed it
            "error_code": "timeout",
            "error_message": "read timeout: the gateway may have sent it",
            "claimed_at": masked[0]["claimed_at"],
        }
    ]
    full = as_json(cli("unknowns", str(cid), "--json", "--full-numbers"))
    assert full[0]["phone"] == "+5511900000000"
    table = cli("unknowns", str(cid))
    assert mask_phone("+5511900000000") in table.stdout and "+5511900000000" not in table.stdout
    other = campaign(store)
    assert "no unknown recipient" in cli("unknowns", str(other)).stdout


def test_stuck__lists_campaigns_running_longer_than_the_threshold(
    cli: Any, store: CampaignStateManager
) -> None:
    old, fresh, paused_old = campaign(store), campaign(store), campaign(store)
    store.pause(paused_old)
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE campaign_batch_state SET created_at = now() - interval '30 hours'"
                " WHERE id IN (:a, :b)"
            ),
            {"a": old, "b": paused_old},
        )
    assert [c["id"] for c in as_json(cli("stuck", "--json"))] == [old]
    assert [c["id"] for c in as_json(cli("stuck", "--hours", "48", "--json"))] == []
    assert {c["id"] for c in as_json(cli("stuck", "--hours", "0", "--json"))} == {old, fresh}
    assert "no campaign has been running" in cli("stuck", "--hours", "48").stdout


# ---------------------------------------------------------------------------------- changes


def test_pause_and_cancel__change_the_status_and_clear_the_run_token(
    cli: Any, store: CampaignStateManager
) -> None:
    cid = campaign(store)
    assert as_json(cli("pause", str(cid), "--json")) == {"id": cid, "status": "paused"}
    paused = store.get_campaign(cid)
    assert paused.status is CampaignStatus.PAUSED and paused.run_token is None
    assert paused.interrupt_reason == "paused by operator"
    assert as_json(cli("cancel", str(cid), "--reason", "wrong list", "--json"))["status"] == (
        "cancelled"
    )
    assert store.get_campaign(cid).interrupt_reason == "wrong list"
    line = one_error_line(cli("pause", str(cid)))
    assert "is cancelled; it cannot become paused" in line


def test_cleanup__deletes_old_completed_campaigns_with_details_and_ledger(
    cli: Any, store: CampaignStateManager
) -> None:
    old, recent, old_cancelled = campaign(store), campaign(store), campaign(store)
    for cid in (old, recent):
        with store.engine.begin() as conn:
            conn.execute(
                text("UPDATE campaign_recipients SET status = 'sent' WHERE campaign_id = :id"),
                {"id": cid},
            )
        token = store.get_campaign(cid).run_token
        assert token is not None
        for batch in (1, 2):
            store.finish_batch(cid, batch, token)
        assert store.get_campaign(cid).status is CampaignStatus.COMPLETED
    store.cancel(old_cancelled)
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE campaign_batch_state SET finished_at = now() - interval"
                " '40 days', updated_at = now() - interval '40 days'"
                " WHERE id IN (:a, :b)"
            ),
            {"a": old, "b": old_cancelled},
        )

    refused = cli("cleanup", input="n\n")
    assert refused.exit_code == 1
    assert len(store.list_campaigns()) == 3

    assert as_json(cli("cleanup", "--yes", "--json")) == {"deleted": 1, "days": 30.0}
    assert {c.id for c in store.list_campaigns()} == {recent, old_cancelled}
    with store.engine.connect() as conn:
        left = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM campaign_recipients WHERE campaign_id = :id)"
                " + (SELECT count(*) FROM campaign_batch_details WHERE campaign_id = :id)"
            ),
            {"id": old},
        ).scalar_one()
    assert left == 0
    assert "deleted 0 completed campaigns" in cli("cleanup", "--yes").stdout
    assert as_json(cli("cleanup", "--days", "0", "--yes", "--json"))["deleted"] == 1
