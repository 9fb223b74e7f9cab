"""The record is readable from other processes while the sandbox writes it, and the command
line starts, serves and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from campaigns.sandbox import SandboxControl, SandboxRecord, SandboxServer
from tests.integration.test_sandbox_helpers import Client, eventually, running_sandbox

ROOT = Path(__file__).resolve().parents[2]
CLOUD = {"Authorization": "Bearer t"}

READER = """
import json, sys
from campaigns.sandbox import SandboxRecord
record = SandboxRecord(sys.argv[1])
print(json.dumps({"count": record.count(), "ids": [m.id for m in record.messages()]}))
"""


def cloud_send(client: Client, session: str, to: str) -> int:
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
            "type": "text", "text": {"body": "Hello"}}
    return client.post(f"/v25.0/{session}/messages", json=body, headers=CLOUD).status_code


def read_in_another_process(path: Path) -> dict[str, list[int] | int]:
    done = subprocess.run([sys.executable, "-c", READER, str(path)], cwd=ROOT, check=True,
                          capture_output=True, text=True, timeout=60)
    result: dict[str, list[int] | int] = json.loads(done.stdout)
    return result


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    with running_sandbox(tmp_path) as server:
        yield server


def test_another_process_reads_the_record_while_the_sandbox_writes(
        sandbox: SandboxServer) -> None:
    total = 300
    client = Client(sandbox.url)
    client.control.throughput(None)  # 300 sends as fast as one thread goes: past Meta's 80/s

    def writer() -> None:
        for n in range(total):
            assert cloud_send(client, "pn1", f"+5511900{n:06d}") == 200

    thread = threading.Thread(target=writer)
    thread.start()
    seen = [read_in_another_process(sandbox.record_path) for _ in range(3)]
    thread.join()
    client.close()

    counts = [int(s["count"]) for s in seen]  # type: ignore[arg-type]
    assert counts == sorted(counts) and all(0 <= c <= total for c in counts)
    final = read_in_another_process(sandbox.record_path)
    assert final["count"] == total and final["ids"] == list(range(1, total + 1))


def test_a_message_is_in_the_record_before_its_answer_arrives(sandbox: SandboxServer) -> None:
    client = Client(sandbox.url)
    record = SandboxRecord(sandbox.record_path)
    for n in range(20):
        assert cloud_send(client, "pn1", f"+5511900{n:06d}") == 200
        assert record.count() == n + 1
    client.close()


def test_duplicates_and_gaps_help_check_a_campaign_run(sandbox: SandboxServer) -> None:
    client = Client(sandbox.url)
    for to in ("+5511900000001", "+5511900000002", "+5511900000001", "+5511900000001"):
        cloud_send(client, "pn1", to)
    cloud_send(client, "pn2", "+5511900000002")
    client.close()
    record = SandboxRecord(sandbox.record_path)

    [duplicate] = record.duplicates()
    assert (duplicate.session, duplicate.e164, duplicate.count) == ("pn1", "+5511900000001", 3)
    assert duplicate.ids == (1, 3, 4)
    gaps = record.gaps("pn1")
    assert len(gaps) == 3 and all(gap >= 0 for gap in gaps)
    assert record.gaps("pn2") == [] and record.count(session="pn2") == 1
    assert record.count(dialect="waha") == 0


def test_a_record_that_does_not_exist_yet_reads_as_empty(tmp_path: Path) -> None:
    record = SandboxRecord(tmp_path / "nothing.sqlite")
    assert record.count() == 0 and record.messages() == [] and record.duplicates() == []
    assert not (tmp_path / "nothing.sqlite").exists()


def test_the_record_stays_readable_after_the_sandbox_stopped(tmp_path: Path) -> None:
    with running_sandbox(tmp_path) as server:
        client = Client(server.url)
        assert cloud_send(client, "pn1", "+5511900000001") == 200
        client.close()
    assert read_in_another_process(tmp_path / "record.sqlite")["count"] == 1


def test_the_command_line_serves_until_sigterm_and_exits_cleanly(tmp_path: Path) -> None:
    record_path = tmp_path / "cli.sqlite"
    env = {**os.environ, "SANDBOX_API_KEY": "cli-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "campaigns.sandbox", "--host", "127.0.0.1", "--port", "0",
         "--record", str(record_path), "--waha-wait", "0.1", "--seed", "3"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = re.fullmatch(r"sandbox listening on (http://127\.0\.0\.1:\d+) \(record: (.+)\)",
                             line)
        assert match, line
        url = match.group(1)
        assert match.group(2) == str(record_path)
        client = Client(url)
        accepted = client.post("/api/sendText", json={"chatId": "5511999999999", "text": "Hi"},
                               headers={"X-Api-Key": "cli-key"})
        refused = client.post("/api/sendText", json={"chatId": "5511999999999", "text": "Hi"},
                              headers={"X-Api-Key": "other"})
        client.control.drop("default")
        not_working = client.post("/api/sendText", json={"chatId": "551199", "text": "Hi"},
                                  headers={"X-Api-Key": "cli-key"})
        client.close()
        assert (accepted.status_code, refused.status_code, not_working.status_code) == (
            201, 401, 422)

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert SandboxRecord(record_path).count() == 1
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/_sandbox/health", timeout=2)


def test_main_rejects_unknown_options() -> None:
    done = subprocess.run([sys.executable, "-m", "campaigns.sandbox", "--waha-shape", "xml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "waha-shape" in done.stderr


def test_the_server_picks_a_free_port_and_reports_it(tmp_path: Path) -> None:
    with running_sandbox(tmp_path / "a") as first, running_sandbox(tmp_path / "b") as second:
        assert first.url != second.url
        assert requests.get(first.url + "/_sandbox/health", timeout=2).json()["url"] == first.url
    with pytest.raises(RuntimeError):
        _ = first.url


def test_eventually_fails_loudly_when_the_condition_never_holds() -> None:
    with pytest.raises(AssertionError, match="never"):
        eventually(lambda: False, timeout=0.05, what="never")


def test_the_campaigns_sandbox_command_sets_the_throughput_and_the_latency(
        tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "campaigns.cli", "sandbox", "--port", "0",
         "--record", str(tmp_path / "cli.sqlite"), "--cloud-throughput", "3",
         "--latency", "0.25"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = re.match(r"sandbox listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        client = Client(match.group(1))
        state = client.control.state()
        started = time.monotonic()
        answer = cloud_send(client, "pn1", "+5511900000001")
        took = time.monotonic() - started
        client.close()
        assert state["throughput"] == {"default": 3, "sessions": {}}
        assert state["latency"] == [{"dialect": None, "session": None, "seconds": 0.25}]
        assert answer == 200 and took >= 0.25
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_python_m_campaigns_sandbox_takes_0_as_no_throughput_limit(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "campaigns.sandbox", "--port", "0",
         "--record", str(tmp_path / "m.sqlite"), "--cloud-throughput", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        match = re.match(r"sandbox listening on (\S+)", process.stdout.readline())
        assert match
        with SandboxControl(match.group(1)) as control:
            assert control.state()["throughput"]["default"] is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(("flag", "value"), [
    ("--latency", "nan"), ("--latency", "-1"), ("--cloud-throughput", "-1"),
    ("--cloud-throughput", "2.5"),
])
def test_the_sandbox_command_refuses_a_bad_limit_in_one_line(flag: str, value: str) -> None:
    from typer.testing import CliRunner

    from campaigns.cli import app

    result = CliRunner().invoke(app, ["sandbox", flag, value])
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    assert flag in result.output


def test_main_refuses_a_bad_limit(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "campaigns.sandbox", "--latency", "inf"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--latency" in done.stderr
