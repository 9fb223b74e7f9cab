"""Flower, as an operator runs it: ``celery -A workers flower --basic-auth=user:pass`` watching
the same broker as the workers. Its HTTP API shows each batch task as ``campaigns.send_batch``
with the campaign id and batch number, refuses callers without credentials, and never shows a
phone number, the message text or a gateway token."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from campaigns.dispatch import TaskSender
from campaigns.domain import CampaignStatus
from campaigns.local.processes import free_port
from campaigns.local.stack import LocalStack, wait_until
from campaigns.processor import CampaignBatchProcessor
from campaigns.sandbox import SandboxRecord
from campaigns.state import CampaignStateManager
from tests.acceptance.conftest import SANDBOX_TOKEN
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

AUTH = ("operator", "s3cret-flower")
MESSAGE = "Promo PINEAPPLE-7731 for {name}"


@dataclass
class Flower:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def get(self, path: str, auth: tuple[str, str] | None = AUTH) -> requests.Response:
        return requests.get(self.url + path, auth=auth, timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def flower(stack_env: dict[str, str], tmp_path: Path) -> Iterator[Flower]:
    """Flower in its own process group, with the stack's environment (same broker and queue)."""
    port = free_port()
    log_path = tmp_path / "flower.log"
    with log_path.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "flower",
             "--address=127.0.0.1", f"--port={port}", f"--basic-auth={AUTH[0]}:{AUTH[1]}"],
            cwd=ROOT, env={**os.environ, **stack_env, "PYTHONUNBUFFERED": "1"},
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    running = Flower(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_until(lambda: _answers(running) or process.poll() is not None, 60, "Flower")
        if process.poll() is not None:
            raise RuntimeError(f"Flower exited:\n{running.log()[-3000:]}")
        yield running
    finally:
        _stop(process)


def test_flower__shows_batch_tasks_by_campaign_and_batch__and_no_recipient_data(
    stack: LocalStack, stack_env: dict[str, str], e2e_store: CampaignStateManager,
    sandbox_url: str, record: SandboxRecord, flower: Flower,
) -> None:
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN")
    stack.start_worker("flowerworker", concurrency=2)
    # Flower learns about tasks from broker events; wait until its event receiver has seen the
    # worker's heartbeat, so no event of the campaign is published before it listens
    wait_until(lambda: 'worker="flowerworker@' in flower.get("/metrics").text, 60,
               "Flower to see the worker's events")
    listed = [f"+5511{920000000 + i}" for i in range(9)]
    enqueue = TaskSender.for_broker(stack_env["CELERY_BROKER_URL"], stack_env["CAMPAIGNS_QUEUE"])
    try:
        processor = CampaignBatchProcessor(
            batch_size=3, min_interval=0, max_interval=0, batch_delay_min=0,
            batch_delay_max=0.2, enqueue=enqueue,
        )
        processor.set_state_manager(e2e_store)
        cid = processor.process_large_campaign_array(
            [{"phone": n, "name": f"Client{i}"} for i, n in enumerate(listed)], MESSAGE, "sales"
        )
        wait_until(lambda: e2e_store.get_campaign(cid).status is CampaignStatus.COMPLETED,
                   60, f"campaign {cid} to complete")
    finally:
        enqueue.close()
    assert record.count() == 9

    def batches_succeeded() -> set[int]:
        return {kwargs["batch_number"] for kwargs, task in _send_batches(flower, cid)
                if task.get("state") == "SUCCESS"}

    wait_until(lambda: batches_succeeded() == {1, 2, 3}, 30, "Flower to show the three batches")

    assert flower.get("/api/tasks", auth=None).status_code == 401
    assert flower.get("/api/tasks", auth=(AUTH[0], "wrong")).status_code == 401
    for kwargs, task in _send_batches(flower, cid):
        assert task["name"] == "campaigns.send_batch"
        assert set(kwargs) == {"campaign_id", "batch_number", "run_token"}
    seen = flower.get("/api/tasks").text + flower.get("/metrics").text
    for task_id in flower.get("/api/tasks").json():
        seen += flower.get(f"/api/task/info/{task_id}").text
    national = [n.removeprefix("+55") for n in listed]
    leaks = [s for s in [*listed, *national, "PINEAPPLE", "Client", SANDBOX_TOKEN] if s in seen]
    assert leaks == []


def _send_batches(flower: Flower, campaign_id: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(kwargs, task) of the campaign's send_batch tasks Flower knows."""
    tasks = flower.get("/api/tasks?taskname=campaigns.send_batch").json()
    found = []
    for task in tasks.values():
        # Flower shows arguments as Celery's repr of them (kwargsrepr)
        kwargs = ast.literal_eval(task.get("kwargs") or "{}")
        if kwargs.get("campaign_id") == campaign_id:
            found.append((kwargs, task))
    return found


def _answers(flower: Flower) -> bool:
    try:
        return flower.get("/healthcheck", auth=None).status_code == 200
    except requests.RequestException:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass
