"""A test session leaves no server behind: a small session on the embedded path (no URL
configured) in a subprocess, then nothing may still run in its data folder; and the leftover
check of tests/conftest.py fails a session whose test leaves a process running."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaigns.local.postgres import EmbeddedPostgres
from campaigns.local.stack import wait_until
from tests.conftest import ROOT
from tests.leftovers import processes_in

pytestmark = pytest.mark.slow

CONFTEST = 'pytest_plugins = ["tests.conftest", "tests.acceptance.conftest"]\n'

EMBEDDED_SERVERS = """
    from sqlalchemy import create_engine, text

    def test_database(database_url):
        engine = create_engine(database_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM campaign_batch_state")).scalar() == 0
        engine.dispose()

    def test_redis(private_redis):
        private_redis.flushall()
"""

LEAVES_A_PROCESS = """
    import subprocess, sys

    def test_leaves_a_sleeper():
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                         start_new_session=True)
"""


@pytest.fixture
def folder(server_tmp_path: Path) -> Iterator[Path]:
    yield server_tmp_path
    EmbeddedPostgres(server_tmp_path / "data" / "test-postgres").stop()


def run_session(folder: Path, tests: str) -> subprocess.CompletedProcess[str]:
    suite = folder / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / "test_inner.py").write_text(textwrap.dedent(tests))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "PYTEST_ADDOPTS"}
    }
    env.update(
        {"CAMPAIGNS_TEST_DATA_DIR": str(folder / "data"), "PYTHONPATH": str(ROOT), "CI": "true"}
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_a_session_on_the_embedded_path__stops_every_server_it_started(folder: Path) -> None:
    result = run_session(folder, EMBEDDED_SERVERS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (folder / "data" / "test-postgres" / "pgdata").is_dir()  # the embedded path ran
    assert processes_in(folder) == []


def test_a_session_whose_test_leaves_a_process__fails_and_names_it(folder: Path) -> None:
    result = run_session(folder, LEAVES_A_PROCESS)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the test session left processes running:" in result.stdout
    assert "time.sleep(120)" in result.stdout
    # and the check terminated it
    wait_until(lambda: processes_in(folder) == [], 10, "the leftover sleeper to be terminated")
