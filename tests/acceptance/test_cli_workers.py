"""The command line driving real worker processes: `campaigns` runs as a subprocess (as an
operator runs it), the workers and the sandbox gateway as LocalStack children, and every claim
about delivery is checked against the sandbox's own record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.local.processes import free_port
from campaigns.local.stack import ROOT, LocalStack, wait_until
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager

pytestmark = pytest.mark.slow


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "campaigns.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+5511{900000000 + i}" for i in range(start, start + count)]


@pytest.fixture
def session(e2e_store: CampaignStateManager, sandbox_url: str) -> str:
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN")
    return "sales"


def create(store: CampaignStateManager, session: str, count: int, **pacing: float) -> int:
    """A campaign created without enqueuing anything (the CLI under test starts it)."""
    values = {
        "batch_size": 5,
        "min_interval": 0.0,
        "max_interval": 0.0,
        "batch_delay_min": 0.0,
        "batch_delay_max": 0.1,
        **pacing,
    }
    campaign = store.create_campaign(numbers(count), "Hi", session, pacing=Pacing(**values))  # type: ignore[arg-type]
    return campaign.id


def finished(store: CampaignStateManager, cid: int) -> bool:
    return store.get_campaign(cid).status.finished


def test_send_then_watch__prints_the_id_and_watch_exits_0_when_completed(
    stack: LocalStack,
    stack_env: dict[str, str],
    e2e_store: CampaignStateManager,
    session: str,
    record: SandboxRecord,
    tmp_path: Path,
) -> None:
    stack.start_worker(concurrency=2)
    path = tmp_path / "numbers.csv"
    path.write_text(
        "phone,name\n"
        + "".join(f"{n},N{i}\n" for i, n in enumerate(numbers(12)))
        + "+5511900000003,again\nnot a phone,x\n",
        encoding="utf-8",
    )

    sent = run_cli(
        stack_env,
        "send",
        str(path),
        "--message",
        "Hi {name}",
        "--session",
        session,
        "--batch-size",
        "5",
        "--min-interval",
        "0.01",
        "--max-interval",
        "0.02",
        "--batch-delay-min",
        "0",
        "--batch-delay-max",
        "0.1",
    )
    assert sent.returncode == 0, sent.stderr
    cid = int(sent.stdout.strip())
    assert "14 entries in 3 batches, 1 duplicates, 1 invalid" in sent.stderr

    watched = run_cli(stack_env, "watch", str(cid), "--interval", "0.2")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert f"campaign {cid} is completed" in watched.stdout or (
        f"campaign {cid} completed" in watched.stdout
    )
    assert record.count(session) == 12
    assert record.duplicates() == []
    assert sorted(m.text for m in record.messages())[:2] == ["Hi N0", "Hi N1"]
    status = json.loads(run_cli(stack_env, "status", str(cid), "--json").stdout)
    assert (status["status"], status["sent"], status["duplicates"], status["invalid"]) == (
        "completed",
        12,
        1,
        1,
    )


def test_send_with_start_at__waits_scheduled_until_then(
    stack_env: dict[str, str],
    e2e_store: CampaignStateManager,
    session: str,
    tmp_path: Path,
) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("\n".join(numbers(3)), encoding="utf-8")
    sent = run_cli(
        stack_env,
        "send",
        str(path),
        "-m",
        "Hi",
        "-s",
        session,
        "--start-at",
        "2099-01-01T09:00:00+00:00",
        "--json",
    )
    assert sent.returncode == 0, sent.stderr
    data = json.loads(sent.stdout)
    assert data["status"] == "scheduled"
    assert data["next_batch_at"].startswith("2099-01-01T09:00:00")


def test_cancel__stops_a_running_campaign_before_its_next_message(
    stack: LocalStack,
    stack_env: dict[str, str],
    e2e_store: CampaignStateManager,
    session: str,
    record: SandboxRecord,
) -> None:
    stack.start_worker(concurrency=2)
    cid = create(e2e_store, session, 40, min_interval=0.3, max_interval=0.4, batch_size=40)
    assert run_cli(stack_env, "resume", str(cid)).returncode == 0
    wait_until(lambda: record.count(session) >= 3, 60, "the first messages")

    cancelled = run_cli(stack_env, "cancel", str(cid), "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    counts = e2e_store.snapshot(cid).counts
    # what was sent or claimed when the cancel committed: nothing can be claimed after it
    ceiling = counts.get(RecipientStatus.SENT, 0) + counts.get(RecipientStatus.SENDING, 0)

    worker_log = stack.children["worker1"].log
    wait_until(
        lambda: "fence lost" in worker_log() or "not ours to run" in worker_log(),
        60,
        "the running task to stop",
    )
    wait_until(
        lambda: not e2e_store.recipients(cid, RecipientStatus.SENDING),
        30,
        "the last claim to be recorded",
    )
    assert record.count(session) <= ceiling
    assert record.count(session) == len(e2e_store.recipients(cid, RecipientStatus.SENT))
    assert e2e_store.get_campaign(cid).status is CampaignStatus.CANCELLED
    assert len(e2e_store.recipients(cid, RecipientStatus.PENDING)) >= 40 - ceiling


def test_pause_then_resume__completes_with_every_number_sent_once(
    stack: LocalStack,
    stack_env: dict[str, str],
    e2e_store: CampaignStateManager,
    session: str,
    record: SandboxRecord,
) -> None:
    stack.start_worker(concurrency=2)
    cid = create(e2e_store, session, 20, min_interval=0.1, max_interval=0.15)
    assert run_cli(stack_env, "resume", str(cid)).returncode == 0
    wait_until(lambda: record.count(session) >= 4, 60, "the first messages")
    assert run_cli(stack_env, "pause", str(cid)).returncode == 0
    wait_until(
        lambda: not e2e_store.recipients(cid, RecipientStatus.SENDING),
        30,
        "the paused task to settle its claim",
    )

    watched = run_cli(stack_env, "watch", str(cid))
    assert watched.returncode == 1  # a paused campaign waits for a person
    assert "paused" in watched.stdout

    resumed = run_cli(stack_env, "resume", str(cid), "--json")
    assert resumed.returncode == 0, resumed.stderr
    data = json.loads(resumed.stdout)
    assert data["status"] == "running" and data["position"] > 1
    wait_until(lambda: finished(e2e_store, cid), 60, "the campaign to finish")
    assert e2e_store.get_campaign(cid).status is CampaignStatus.COMPLETED
    assert record.count(session) == 20
    assert record.duplicates() == []


def test_recover__sweep_resumes_an_interrupted_campaign_whose_session_is_back(
    stack: LocalStack,
    stack_env: dict[str, str],
    e2e_store: CampaignStateManager,
    session: str,
    record: SandboxRecord,
    sandbox: SandboxControl,
) -> None:
    stack.start_worker(concurrency=2)
    cid = create(e2e_store, session, 10)
    sandbox.drop(session)
    assert run_cli(stack_env, "resume", str(cid)).returncode == 0
    wait_until(
        lambda: e2e_store.get_campaign(cid).status is CampaignStatus.INTERRUPTED,
        60,
        "the campaign to be interrupted",
    )

    waiting = run_cli(stack_env, "recover", "--json")
    assert waiting.returncode == 0, waiting.stderr
    assert json.loads(waiting.stdout) == {
        "resumed": [],
        "waiting": [{"session": session, "state": "STOPPED", "detail": ""}],
    }

    sandbox.restore(session)
    recovered = run_cli(stack_env, "recover")
    assert recovered.returncode == 0, recovered.stderr
    assert (
        f"campaign {cid} on {session}: resumed from batch 1, recipient #1, because "
        f"session {session} reconnected"
    ) in recovered.stdout
    wait_until(lambda: finished(e2e_store, cid), 60, "the campaign to finish")
    assert record.count(session) == 10
    assert record.duplicates() == []


def test_recover_one_id__resumes_it_now(
    stack: LocalStack,
    stack_env: dict[str, str],
    e2e_store: CampaignStateManager,
    session: str,
    record: SandboxRecord,
) -> None:
    stack.start_worker(concurrency=2)
    cid = create(e2e_store, session, 6)
    e2e_store.mark_interrupted(cid, "session sales is not connected (STOPPED)")
    recovered = run_cli(stack_env, "recover", str(cid), "--json")
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout)["resumed"][0]["batch"] == 1
    wait_until(lambda: finished(e2e_store, cid), 60, "the campaign to finish")
    assert record.count(session) == 6


def test_watch__exits_1_for_a_cancelled_campaign(
    stack_env: dict[str, str],
    e2e_store: CampaignStateManager,
    session: str,
) -> None:
    cid = create(e2e_store, session, 3)
    e2e_store.cancel(cid)
    watched = run_cli(stack_env, "watch", str(cid), "--json")
    assert watched.returncode == 1
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    assert lines[-1]["status"] == "cancelled"


def test_sandbox_command__serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "campaigns.cli",
            "sandbox",
            "--port",
            str(port),
            "--record",
            str(tmp_path / "rec" / "sandbox.sqlite"),
            "--api-key",
            "k",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with SandboxControl(f"http://127.0.0.1:{port}") as control:

            def answers() -> bool:
                try:
                    return bool(control.health()["ok"])
                except OSError:
                    return False

            wait_until(answers, 30, "the sandbox to answer")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_webhooks_command__delegates_to_the_receiver_until_sigterm(
    stack_env: dict[str, str],
) -> None:
    import requests

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "campaigns.cli", "webhooks", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **stack_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def answers() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(lambda: answers() or process.poll() is not None, 30, "the receiver")
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
