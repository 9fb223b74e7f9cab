"""Every command as a newcomer meets it: on a fresh data folder (no URL configured), and on a
configured database whose schema is missing or behind. Each command works, or exits 1 with one
line saying what to run; none prints a traceback, and none leaves a server running that it did
not need."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command

from campaigns.cli import app
from campaigns.local.postgres import EmbeddedPostgres
from campaigns.local.processes import free_port
from campaigns.local.redis import EmbeddedRedis
from campaigns.local.stack import ROOT, wait_until
from campaigns.store import db
from campaigns.store.schema import head_revision
from tests.leftovers import processes_in

pytestmark = pytest.mark.slow

URL_VARIABLES = {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "CAMPAIGNS_QUEUE"}

NOT_RUN_HERE = {
    ("demo",): "runs a whole campaign; test_cli_demo.py runs it on a fresh machine",
    ("sandbox",): "a gateway server that uses no database or broker",
    ("webhooks",): "a server that runs until stopped: started and stopped on its own below",
    ("web",): "the same service as webhooks (tests/integration/test_web_webhooks.py runs it)",
}


def leaf_commands(command: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        return {prefix}
    leaves: set[tuple[str, ...]] = set()
    for name, sub in subcommands.items():
        leaves |= leaf_commands(sub, (*prefix, name))
    return leaves


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in URL_VARIABLES}
    return {**env, "CAMPAIGNS_DATA_DIR": str(data_dir), **extra}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "campaigns.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def check(result: subprocess.CompletedProcess[str], expected: int) -> str:
    """Exit code as expected, no traceback; an error is one line. Returns that line ('' if ok)."""
    shown = f"{result.args[3:]}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, shown
    assert result.returncode == expected, shown
    if expected == 0:
        return ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    return lines[0]


def stop_embedded(data_dir: Path) -> None:
    EmbeddedPostgres(data_dir / "postgres").stop()
    EmbeddedRedis(data_dir / "redis").stop()


@pytest.fixture
def data(server_tmp_path: Path) -> Iterator[Path]:
    """A fresh data folder (outside pytest's temporary root: see server_tmp_path)."""
    folder = server_tmp_path / "data"
    yield folder
    stop_embedded(folder)


def command_of(args: tuple[str, ...], leaves: set[tuple[str, ...]]) -> tuple[str, ...]:
    return next(leaf for leaf in leaves if args[: len(leaf)] == leaf)


def test_every_command_on_a_fresh_data_folder__works_or_says_what_to_run(
    data: Path, tmp_path: Path
) -> None:
    env = cli_env(data)
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("+5511900000001\n+5511900000002\n")
    missing_file = str(tmp_path / "missing.txt")
    # (command, expected exit code: 1 is one line naming the problem); none needs the broker
    database_only: list[tuple[tuple[str, ...], int]] = [
        (("services", "status"), 0),
        (("list",), 0),  # the embedded database is migrated on first use
        (("status", "1"), 1),
        (("watch", "1"), 1),
        (("unknowns", "1"), 1),
        (("export", "1"), 1),
        (("stuck",), 0),
        (("cleanup", "--yes"), 0),
        (("pause", "1"), 1),
        (("cancel", "1"), 1),
        (("resume", "1"), 1),
        (("recover",), 0),
        (("recover", "1"), 1),
        (("retry", "1"), 1),
        (("sessions", "list"), 0),
        (("sessions", "check"), 1),
        (("sessions", "remove", "sales"), 1),
        (("send", missing_file, "-s", "sales", "-m", "Hi"), 1),
        (("optouts", "add", "+5511900000009"), 0),
        (("optouts", "list"), 0),
        (("optouts", "export"), 0),
        (("optouts", "remove", "+5511900000009"), 0),
        (("optouts", "import", missing_file), 1),
        (("db", "upgrade"), 0),
        (("db", "downgrade", "base"), 0),
        (("stuck",), 0),  # the downgraded embedded database is migrated again
        (("sessions", "add", "sales", "--gateway", "console", "--base-url", "console://x"), 0),
        (("sessions", "check", "sales"), 0),
        (("tokens", "create", "crm", "--scope", "read"), 0),
        (("tokens", "create", "crm", "--scope", "read"), 1),  # the name is taken
        (("tokens", "list"), 0),
        (("tokens", "revoke", "crm"), 0),
        (("tokens", "revoke", "nobody"), 1),
    ]
    # then a campaign, which needs the broker (the embedded Redis, started when first used)
    with_campaign = [
        ("status", "{id}"),
        ("unknowns", "{id}"),
        ("export", "{id}"),
        ("pause", "{id}"),
        ("resume", "{id}"),
        ("cancel", "{id}"),
        ("sessions", "remove", "sales"),
        ("services", "stop"),
    ]
    leaves = leaf_commands(get_command(app))
    covered = {("send",), ("webhooks",)}  # webhooks: the next test
    for args, expected in database_only:
        check(run(env, *args), expected)
        covered.add(command_of(args, leaves))
    assert not EmbeddedRedis(data / "redis").is_running()
    assert not (data / "redis" / "redis.pid").exists()

    sent = run(env, "send", str(numbers), "-s", "sales", "-m", "Hi")
    check(sent, 0)
    campaign_id = sent.stdout.strip()
    for args in with_campaign:
        check(run(env, *(a.format(id=campaign_id) for a in args)), 0)
        covered.add(command_of(args, leaves))
    assert processes_in(data) == []  # `services stop` stopped both servers
    assert leaves - covered == set(NOT_RUN_HERE) - {("webhooks",)}


def test_webhooks_on_a_fresh_data_folder__serves_then_stops_cleanly(data: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "campaigns.cli", "webhooks", "--port", str(port)],
        cwd=ROOT,
        env=cli_env(data),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def answers() -> bool:
            if process.poll() is not None:
                return True  # exited: the assertions below say why
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_until(answers, 90, "the webhook receiver to listen")
        assert process.poll() is None, process.communicate()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert "Traceback" not in out + err, err
    assert process.returncode == 0, err


def test_configured_database_without_schema__commands_say_to_run_db_upgrade(
    empty_database_url: str, data: Path
) -> None:
    env = {**cli_env(data), "DATABASE_URL": empty_database_url}
    commands = [
        ("list",),
        ("status", "1"),
        ("sessions", "list"),
        ("stuck",),
        ("cleanup", "--yes"),
        ("unknowns", "1"),
        ("export", "1"),
        ("optouts", "list"),
        ("recover",),
        ("pause", "1"),
    ]
    missing = f"error: the database at {empty_database_url} has no schema: "
    for args in commands:
        assert check(run(env, *args), 1) == missing + "run `campaigns db upgrade`"
    assert db.current_revision(empty_database_url) is None  # a configured database is never
    # migrated behind the operator's back

    check(run(env, "db", "upgrade", "0001"), 0)
    behind = check(run(env, "list"), 1)
    head = head_revision()
    assert behind == (
        f"error: the database at {empty_database_url} is at revision 0001, head is {head}: "
        "run `campaigns db upgrade`"
    )
    check(run(env, "db", "upgrade"), 0)
    check(run(env, "list"), 0)
    check(run(env, "recover"), 0)
    # with DATABASE_URL given, none of these needed a server of the data folder
    assert not (data / "redis" / "redis.pid").exists()
    assert not (data / "postgres").exists()
    assert processes_in(data) == []


def test_db_upgrade_and_list_with_a_configured_database__start_no_redis(
    empty_database_url: str, data: Path
) -> None:
    env = {**cli_env(data), "DATABASE_URL": empty_database_url}
    check(run(env, "db", "upgrade"), 0)
    check(run(env, "list"), 0)
    assert not (data / "redis" / "redis.pid").exists()
    assert not EmbeddedRedis(data / "redis").is_running()
    assert processes_in(data) == []
