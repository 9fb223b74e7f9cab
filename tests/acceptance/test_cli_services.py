"""`campaigns services status|stop` on embedded servers of a private data folder (never the
machine's shared servers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from campaigns.local.services import ensure_local_services
from campaigns.local.stack import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def tmp_path(server_tmp_path: Path) -> Path:
    """Every server of this module lives outside pytest's temporary root (see
    tests/conftest.py server_tmp_path)."""
    return server_tmp_path


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"}
    }
    env["CAMPAIGNS_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "campaigns.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_services_stop__stops_the_embedded_servers_of_the_data_folder(tmp_path: Path) -> None:
    services = ensure_local_services(tmp_path, {})
    assert services.postgres is not None and services.redis is not None
    try:
        status = json.loads(run_cli(tmp_path, "services", "status", "--json").stdout)
        assert status["postgres"]["running"] and status["redis"]["running"]
        assert status["redis"]["url"] == services.redis_url

        stopped = run_cli(tmp_path, "services", "stop", "--json")
        assert stopped.returncode == 0, stopped.stderr
        assert json.loads(stopped.stdout)["stopped"] == ["postgres", "redis"]
        assert not services.postgres.is_running() and not services.redis.is_running()
        again = run_cli(tmp_path, "services", "stop")
        assert again.returncode == 0 and "no embedded server runs" in again.stdout
    finally:
        services.postgres.stop()
        services.redis.stop()


def test_db_upgrade__works_on_the_embedded_database(tmp_path: Path) -> None:
    try:
        upgraded = run_cli(tmp_path, "db", "upgrade", "--json")
        assert upgraded.returncode == 0, upgraded.stderr
        assert json.loads(upgraded.stdout)["to"] is not None
        listed = run_cli(tmp_path, "list", "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout) == []
    finally:
        assert run_cli(tmp_path, "services", "stop").returncode == 0
