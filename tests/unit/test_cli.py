"""The command line without servers: help everywhere, usage errors exit 2, error chains print
one line per cause, the demo's generated numbers."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from campaigns.cli import app, main
from campaigns.cli.app import error_lines
from campaigns.cli.demo import generate_numbers
from campaigns.cli.send import parse_start_at
from campaigns.cli.sessions import parse_options
from campaigns.errors import CampaignError, StoreUnavailable, UnknownSession
from campaigns.numbers import normalize

runner = CliRunner()


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += _command_paths(sub, (*prefix, name))
    return paths


COMMAND_PATHS = _command_paths(get_command(app))


def test_every_command__has_help_and_exits_0() -> None:
    assert len(COMMAND_PATHS) >= 25
    for path in COMMAND_PATHS:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.stdout


def test_every_command_that_prints_data__takes_json() -> None:
    quiet = {("demo",), ("sandbox",), ("web",), ("webhooks",)}
    for path in COMMAND_PATHS:
        command: Any = get_command(app)
        for name in path:
            command = command.commands[name]
        if hasattr(command, "commands") or path in quiet:
            continue
        options = {opt for p in command.params for opt in p.opts}
        assert "--json" in options, path


def test_demo__takes_json_numbers_and_keep_data() -> None:
    result = runner.invoke(app, ["demo", "--help"])
    assert all(flag in result.stdout for flag in ("--json", "--numbers", "--keep-data"))


def test_missing_required_option__is_a_usage_error_with_exit_2() -> None:
    result = runner.invoke(app, ["send", "numbers.txt", "--message", "Hi"])
    assert result.exit_code == 2
    assert "Missing option '--session'" in result.stderr


def test_unknown_gateway_kind__is_a_usage_error_with_exit_2() -> None:
    result = runner.invoke(
        app, ["sessions", "add", "x", "--gateway", "telegram", "--base-url", "http://h"]
    )
    assert result.exit_code == 2
    assert "telegram" in result.stderr


def test_non_numeric_campaign_id__is_a_usage_error_with_exit_2() -> None:
    result = runner.invoke(app, ["status", "twelve"])
    assert result.exit_code == 2


def test_message_and_message_file_together__is_a_usage_error(tmp_path: Any) -> None:
    (tmp_path / "m.txt").write_text("Hi")
    result = runner.invoke(
        app, ["send", "n.txt", "-s", "x", "-m", "Hi", "--message-file", str(tmp_path / "m.txt")]
    )
    assert result.exit_code == 2
    assert "exactly one of --message and --message-file" in result.stderr


def test_main__returns_exit_codes_instead_of_raising() -> None:
    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2


def test_error_chain__one_line_per_cause_without_traceback() -> None:
    try:
        try:
            try:
                raise OSError("connection refused\n\tIs the server running on port 5432?")
            except OSError as exc:
                raise StoreUnavailable("could not connect") from exc
        except StoreUnavailable as exc:
            raise CampaignError("cannot list campaigns") from exc
    except CampaignError as exc:
        lines = error_lines(exc)
    assert lines == [
        "error: cannot list campaigns",
        "  caused by: StoreUnavailable: could not connect",
        "  caused by: OSError: connection refused Is the server running on port 5432?",
    ]


def test_error_chain__uses_the_docstring_message_with_context() -> None:
    assert error_lines(UnknownSession(name="sales")) == [
        "error: No sender session has that name; add it with `campaigns sessions add`. "
        "(name='sales')"
    ]


def test_database_down__prints_the_cause_chain_one_line_each_and_exits_1() -> None:
    refused = {
        "DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1:1/nothing",
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    result = runner.invoke(app, ["status", "5"], env=refused)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "127.0.0.1" in lines[0]
    assert all(line.startswith("  caused by: ") for line in lines[1:])
    assert "Traceback" not in result.output


def test_option_pairs__parse_and_reject_a_pair_without_equals() -> None:
    assert parse_options(["phone_number_id=123", " instance = main "]) == {
        "phone_number_id": "123",
        "instance": "main",
    }
    with pytest.raises(typer.BadParameter):
        parse_options(["phone_number_id"])


def test_start_at__without_a_zone_is_local_time_and_garbage_is_refused() -> None:
    moment = parse_start_at("2030-01-02T09:30:00")
    assert moment is not None and moment.tzinfo is not None
    assert moment.hour == 9
    zoned = parse_start_at("2030-01-02T09:30:00-03:00")
    assert zoned is not None and zoned.utcoffset() is not None
    with pytest.raises(typer.BadParameter):
        parse_start_at("next tuesday")


def test_demo_numbers__hold_duplicates_and_invalid_entries_in_the_asked_count() -> None:
    entries = generate_numbers(300, seed=7)
    assert len(entries) == 300
    normalized = [normalize(e, "BR") for e in entries]
    invalid = sum(1 for n in normalized if n is None)
    valid = [n for n in normalized if n is not None]
    assert invalid == 3
    assert len(valid) - len(set(valid)) == 6
