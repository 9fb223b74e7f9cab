"""What the command-line acceptance tests share: running ``campaigns`` in process on an
environment, reading its JSON answer or its one error line, and a store with the sessions a
test file needs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from typer.testing import CliRunner, Result

from campaigns.cli import app
from campaigns.settings import Settings
from campaigns.state import CampaignStateManager


def invoker(env: dict[str, str]) -> Callable[..., Result]:
    """``invoke(*args)``: the command line run in process with exactly ``env``."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), env=env)

    return invoke


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_error_line(result: Result) -> str:
    """The command failed as bad input must: exit 1, one line ``error: ...``, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


@contextmanager
def cli_store(
    database_url: str, env: dict[str, str], *sessions: str, **options: str
) -> Iterator[CampaignStateManager]:
    """A store on ``env``'s settings with console ``sessions`` (each with ``options``)."""
    manager = CampaignStateManager(database_url, settings=Settings.from_env(env))
    for name in sessions:
        manager.add_session(name, "console", "console://local", **options)
    try:
        yield manager
    finally:
        manager.dispose()
