"""`campaigns demo` end to end, as a new user runs it: a subprocess that starts the sandbox, a
worker and beat, drops the session half-way and lets recovery resume it; and Ctrl-C, which must
leave nothing running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from campaigns.local.redis import EmbeddedRedis
from campaigns.local.stack import ROOT, wait_until
from campaigns.sandbox import SandboxRecord
from campaigns.state import CampaignStateManager

pytestmark = pytest.mark.slow


@pytest.fixture
def demo_env(database_url: str, private_redis: EmbeddedRedis, tmp_path: Path) -> dict[str, str]:
    if not private_redis.is_running():
        private_redis.start()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "CAMPAIGNS_QUEUE"}
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": private_redis.url(),
            "REDIS_URL": private_redis.url(),
            "CAMPAIGNS_DATA_DIR": str(tmp_path / "data"),
            # every process the demo starts inherits this: how the test finds survivors
            "DEMO_TEST_MARKER": uuid.uuid4().hex,
        }
    )
    return env


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (this test's demo and children)."""
    found = []
    needle = f"DEMO_TEST_MARKER={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue  # exited meanwhile, or not ours to read
    return found


def test_demo__completes_with_a_recovery_and_no_duplicate_in_the_sandbox_record(
    demo_env: dict[str, str],
    database_url: str,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "campaigns.cli", "demo", "--numbers", "150", "--json"],
        cwd=ROOT,
        env=demo_env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    story = result.stderr
    assert summary["status"] == "completed"
    assert (summary["entries"], summary["duplicates"], summary["invalid"]) == (150, 3, 1)
    assert summary["sent"] == 146 and summary["failed"] == 0 and summary["unknown"] == 0
    assert summary["interrupted"] is True and summary["resumed_from"]["batch"] >= 1
    # the sandbox's signed receipts reached the web service: every send delivered, ~70% read
    assert summary["delivered"] == 146 and 0 < summary["read"] < 146
    assert summary["recovered_by"] in story and "the recovery was triggered by" in story
    for line in (
        "sessions demo-sandbox and demo-sandbox-2 added",
        "WhatsApp session demo-sandbox-2 dropped",
        "lane demo-sandbox-2 left the rotation (disconnected",
        "WhatsApp session demo-sandbox dropped",
        "interrupted: every session of the pool is down",
        "session demo-sandbox reconnected",
        "resumed from batch",
    ):
        assert line in story, story
    # one lane down first, the campaign sending on; then the whole pool, and the recovery
    assert story.index("left the rotation") < story.index("WhatsApp session demo-sandbox ")
    assert story.index("WhatsApp session demo-sandbox ") < story.index("interrupted: ")
    assert story.index("interrupted: ") < story.index("reconnected")
    assert story.index("reconnected") < story.index("resumed from batch")
    # both sessions sent, and the ledger's stamp agrees with the sandbox
    per_session = summary["sent_per_session"]
    assert set(per_session) == {"demo-sandbox", "demo-sandbox-2"}
    assert all(count > 0 for count in per_session.values())
    assert sum(per_session.values()) == 146

    record = SandboxRecord(summary["sandbox_record"])
    assert record.path.exists()
    assert record.duplicates() == [] and summary["sandbox_duplicates"] == 0
    assert record.count() == summary["sandbox_messages"] == 146
    assert processes_with(demo_env["DEMO_TEST_MARKER"]) == []
    # without --keep-data the demo leaves the operator's database as it found it
    store = CampaignStateManager(database_url)
    try:
        assert store.list_campaigns() == [] and store.list_sessions() == []
    finally:
        store.dispose()


def test_demo__prints_a_summary_table_and_keeps_its_campaign_with_keep_data(
    demo_env: dict[str, str],
    database_url: str,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "campaigns.cli", "demo", "--numbers", "60", "--keep-data"],
        cwd=ROOT,
        env=demo_env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for label in (
        "sent",
        "failed",
        "duplicates",
        "invalid",
        "unknown",
        "duration",
        "sandbox duplicates",
        "sandbox record",
    ):
        assert label in result.stdout
    store = CampaignStateManager(database_url)
    try:
        [campaign] = store.list_campaigns()
        assert campaign.status.value == "completed" and campaign.success_count == 58
        assert store.check_invariants(campaign.id) == []
    finally:
        store.dispose()


def test_demo__sigint_mid_run_stops_every_child_and_exits_130(
    demo_env: dict[str, str],
    database_url: str,
    tmp_path: Path,
) -> None:
    out = tmp_path / "demo.out"
    with out.open("w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "campaigns.cli", "demo", "--numbers", "300"],
            cwd=ROOT,
            env=demo_env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
        )
    marker = demo_env["DEMO_TEST_MARKER"]
    try:
        wait_until(
            lambda: "entries from numbers.txt" in out.read_text() or process.poll() is not None,
            90,
            "the demo campaign to start",
        )
        assert process.poll() is None, out.read_text()
        assert len(processes_with(marker)) >= 5  # the demo, sandbox, worker, beat, web service
        # the web service the demo printed answers while the demo runs
        [web] = re.findall(r"web service: (http://127\.0\.0\.1:\d+)", out.read_text())
        assert requests.get(f"{web}/healthz", timeout=5).status_code == 200
        # and so does its dashboard, with the token it printed for a newcomer to sign in
        printed = out.read_text()
        assert f"dashboard: {web}/ (sign in with the token below)" in printed
        [token] = re.findall(r"dashboard token \(operator, this demo only\): (cc_\S+)", printed)
        with requests.Session() as browser:
            page = browser.post(f"{web}/login", data={"token": token}, timeout=5)
            assert page.status_code == 200 and 'data-testid="campaign-row"' in page.text
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = out.read_text()
    assert code == 130, text
    assert "demo interrupted: " in text
    assert "worker, beat, sandbox and web service stopped" in text
    assert "Traceback" not in text
    assert processes_with(marker) == []
    store = CampaignStateManager(database_url)
    try:
        assert store.list_campaigns() == []  # cancelled, then removed with its session
    finally:
        store.dispose()


def test_demo_on_a_fresh_machine__starts_embedded_servers_and_stops_them_afterwards(
    server_tmp_path: Path,
) -> None:
    from campaigns.local.postgres import EmbeddedPostgres

    data = server_tmp_path / "fresh"
    marker = uuid.uuid4().hex
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "CAMPAIGNS_QUEUE"}
    }
    env.update({"CAMPAIGNS_DATA_DIR": str(data), "DEMO_TEST_MARKER": marker})
    result = subprocess.run(
        [sys.executable, "-m", "campaigns.cli", "demo", "--numbers", "60", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["sent"] == summary["sandbox_messages"] == 58
    assert summary["sandbox_duplicates"] == 0
    assert "starting the embedded servers" in result.stderr
    assert "embedded postgres and redis stopped" in result.stderr
    assert not EmbeddedPostgres(data / "postgres").is_running()
    assert not EmbeddedRedis(data / "redis").is_running()
    assert processes_with(marker) == []

    # what a newcomer types next: the embedded database is migrated on first use
    try:
        listed = subprocess.run(
            [sys.executable, "-m", "campaigns.cli", "list", "--json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []
        assert not EmbeddedRedis(data / "redis").is_running()  # list needs no Redis
    finally:
        EmbeddedPostgres(data / "postgres").stop()
