"""``campaigns tokens create|list|revoke`` in process against a real PostgreSQL: the token on
stdout alone, once, with a warning on stderr; only its hash kept; list (text and --json) without
any token or hash; revoke, twice; bad input (a bad scope, a name taken, an unknown name) one
error line, nothing changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from campaigns.cli import app
from campaigns.state import CampaignStateManager
from tests.acceptance.cli_helpers import cli_store


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {"DATABASE_URL": database_url}  # tokens need the database only


@pytest.fixture
def cli(env: dict[str, str]) -> Any:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["tokens", *args], env=env)

    return invoke


@pytest.fixture
def store(database_url: str, env: dict[str, str]) -> Iterator[CampaignStateManager]:
    with cli_store(database_url, env) as manager:
        yield manager


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_create__prints_the_token_once_on_stdout_and_keeps_its_hash(
    cli: Any, store: CampaignStateManager
) -> None:
    created = cli("create", "crm", "--scope", "operator")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("cc_") and "\n" not in token
    assert "not shown again" in created.stderr and token not in created.stderr
    assert store.token_scope(token) == "operator"
    as_json = cli("create", "dash", "--scope", "READ", "--json")
    data = json.loads(as_json.stdout)
    assert data["name"] == "dash" and data["scope"] == "read"
    assert store.token_scope(data["token"]) == "read"


def test_list__shows_names_scopes_and_use_never_a_token(
    cli: Any, store: CampaignStateManager
) -> None:
    assert "no API token" in cli("list").stdout
    token = cli("create", "crm", "--scope", "read").stdout.strip()
    store.token_scope(token)  # one use: stamped
    text = cli("list")
    assert text.exit_code == 0 and "crm" in text.stdout and token not in text.stdout
    rows = json.loads(cli("list", "--json").stdout)
    assert [(r["name"], r["scope"]) for r in rows] == [("crm", "read")]
    assert rows[0]["last_used_at"] is not None and rows[0]["revoked_at"] is None
    assert set(rows[0]) == {"name", "scope", "created_at", "last_used_at", "revoked_at"}


def test_revoke__refuses_the_token_at_once_and_twice_says_so(
    cli: Any, store: CampaignStateManager
) -> None:
    token = cli("create", "crm", "--scope", "operator").stdout.strip()
    revoked = cli("revoke", "crm")
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert store.token_scope(token) is None
    again = json.loads(cli("revoke", "crm", "--json").stdout)
    assert again == {"name": "crm", "revoked": True, "already": True}
    assert json.loads(cli("list", "--json").stdout)[0]["revoked_at"] is not None


def test_bad_input__is_one_error_line_and_changes_nothing(
    cli: Any, store: CampaignStateManager
) -> None:
    assert "--scope" in one_error_line(cli("create", "crm", "--scope", "admin"))
    assert cli("create", "crm", "--scope", "read").exit_code == 0
    assert "exists already" in one_error_line(cli("create", "crm", "--scope", "operator"))
    assert "no api token" in one_error_line(cli("revoke", "nobody")).lower()
    assert [(r["name"], r["scope"]) for r in store.list_tokens()] == [("crm", "read")]
