"""The command line's options are range-checked like the Python API: a bad value prints one
``error: ...`` line naming the option and exits 1, with no traceback and nothing created; and
DATABASE_URL works in the forms users write."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from campaigns.cli import app
from campaigns.state import CampaignStateManager
from campaigns.store import db
from tests.acceptance.cli_helpers import cli_store


@pytest.fixture
def cli(stack_env: dict[str, str]) -> Any:
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, list(args), env={**stack_env, **(env or {})})

    return invoke


@pytest.fixture
def store(database_url: str, stack_env: dict[str, str]) -> Iterator[CampaignStateManager]:
    with cli_store(database_url, stack_env, "sales") as manager:
        yield manager


@pytest.fixture
def numbers_file(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.txt"
    path.write_text("+5511900000001\n+5511900000002\n", encoding="utf-8")
    return path


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def _with_form(url: str, driver: str) -> str:
    return make_url(url).set(drivername=driver).render_as_string(hide_password=False)


# -------------------------------------------------------------------------------- send


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--batch-size", "0"], "--batch-size must be a whole number from 1 to 100000, got 0"),
        (["--batch-size", "100001"], "--batch-size must be a whole number from 1 to 100000"),
        (["--min-interval", "nan"], "--min-interval must be a finite number of seconds"),
        (["--max-interval", "inf"], "--max-interval must be a finite number of seconds"),
        (["--batch-delay-min", "-1"], "--batch-delay-min must be a finite number"),
        (["--batch-delay-max", "1e9"], "--batch-delay-max must be a finite number"),
        (["--min-interval", "5", "--max-interval", "1"], "min_interval (5) is above"),
        (["-m", "Hi\x1b[2J"], "control character U+001B"),
        (["-s", "sa\tles"], "--session has a control character U+0009"),
    ],
)
def test_send__bad_option_prints_one_line_naming_it_and_creates_nothing(
    cli: Any, store: CampaignStateManager, numbers_file: Path, args: list[str], words: str
) -> None:
    base = ["send", str(numbers_file), "-s", "sales", "-m", "Hi"]
    assert words in one_error_line(cli(*base, *args))
    assert store.list_campaigns() == []


# ---------------------------------------------------------------------- other commands


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["list", "--limit", "0"], "--limit must be a whole number from 1"),
        (["list", "--limit", "-5"], "--limit must be a whole number from 1"),
        (["stuck", "--hours", "-1"], "--hours must be a finite number of hours"),
        (["stuck", "--hours", "nan"], "--hours must be a finite number of hours"),
        (["stuck", "--hours", "inf"], "--hours must be a finite number of hours"),
        (["cleanup", "--days", "nan", "--yes"], "--days must be a finite number of days"),
        (["cleanup", "--days", "-1", "--yes"], "--days must be a finite number of days"),
        (["watch", "1", "--interval", "nan"], "--interval must be a finite number of seconds"),
        (["watch", "1", "--interval", "0"], "--interval must be a finite number of seconds"),
        (["status", "0"], "ID must be a whole number from 1 to 2147483647, got 0"),
        (["status", "99999999999"], "ID must be a whole number from 1 to 2147483647"),
        (["unknowns", "--", "-1"], "ID must be a whole number"),
        (["pause", "99999999999"], "ID must be a whole number"),
        (["resume", "0"], "ID must be a whole number"),
        (["cancel", "0"], "ID must be a whole number"),
        (["recover", "0"], "ID must be a whole number"),
        (["pause", "1", "--reason", "bad\x00reason"], "--reason has a control character"),
        (["list", "--session", "a\nb"], "--session has a control character"),
    ],
)
def test_commands__bad_option_prints_one_line_naming_it(
    cli: Any, store: CampaignStateManager, args: list[str], words: str
) -> None:
    assert words in one_error_line(cli(*args))


def test_commands__good_options_still_work(cli: Any, store: CampaignStateManager) -> None:
    for args in (
        ["list", "--limit", "1", "--json"],
        ["stuck", "--hours", "0.5", "--json"],
        ["cleanup", "--days", "0", "--yes", "--json"],
    ):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.output)


# ----------------------------------------------------------------------------- db upgrade


@pytest.mark.parametrize("driver", ["postgresql", "postgres", "postgresql+psycopg2"])
def test_db_upgrade__database_url_as_users_write_it(
    cli: Any, empty_database_url: str, driver: str
) -> None:
    url = _with_form(empty_database_url, driver)
    result = cli("db", "upgrade", env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert db.current_revision(empty_database_url) is not None


@pytest.mark.parametrize("driver", ["postgresql+asyncpg", "mysql", "sqlite"])
def test_db_upgrade__unsupported_driver_prints_one_line_naming_database_url(
    cli: Any, empty_database_url: str, driver: str
) -> None:
    url = _with_form(empty_database_url, driver)
    line = one_error_line(cli("db", "upgrade", env={"DATABASE_URL": url}))
    assert line.startswith(f"error: DATABASE_URL uses '{driver}'")
    assert db.current_revision(empty_database_url) is None
