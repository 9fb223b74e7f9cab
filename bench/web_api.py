"""The operators' HTTP API (issue 13): a 100,000-number list uploaded as a file to a real
``campaigns web`` process (``POST /api/v1/campaigns``, multipart), timed from the request to
the 201, with the service process's peak RSS (its VmHWM, read from /proc while it runs).
Baseline: the Python API's creation of the same file
(``CampaignBatchProcessor.process_large_campaign_array(Path)``) in a child process of its own,
in the same run, into the same kind of scratch database. Targets: the Python API's creation
targets (bench/loading.py): the 30 s-per-1M rate, and under 300 MB."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from bench.consent import _high_water_kb
from bench.harness import Bench, Row, fmt_s
from bench.ledgers import web_service
from bench.loading import TARGET_RSS_MB, TARGET_SECONDS, write_number_file
from campaigns.local.stack import ROOT
from campaigns.settings import Settings
from campaigns.store import CampaignStateManager

NAME = "web-api"
LABEL = "http api"
FULL, QUICK = 100_000, 2_000

_PYTHON_API = """
import resource, sys, time
from pathlib import Path
from campaigns.processor import CampaignBatchProcessor
from campaigns.store import CampaignStateManager
store = CampaignStateManager()
processor = CampaignBatchProcessor(enqueue=lambda *args: None)
processor.set_state_manager(store)
started = time.perf_counter()
processor.process_large_campaign_array(Path(sys.argv[1]), "Oi", "sales")
seconds = time.perf_counter() - started
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def run(bench: Bench) -> list[Row]:
    size = QUICK if bench.quick else FULL
    numbers = bench.work_dir / f"web-api-{size}.txt"
    write_number_file(numbers, size)
    base_s, base_mb = _python_api(bench, numbers)
    web_s, web_mb, ready_mb = _upload(bench, numbers)
    target_s = TARGET_SECONDS * size / 1_000_000
    bench.notes.append(
        f"http api: {size:,} numbers (1% repeats, 0.5% invalid) uploaded as one multipart file "
        "to `campaigns web` (a subprocess; the token from the store); seconds from the request "
        "to the 201 (the ledger committed, the first batch enqueued); the service's peak RSS "
        f"is its VmHWM (after start: {ready_mb:.0f} MB). Baseline: the Python API's creation "
        "of the same file in a child process (its ru_maxrss), into its own scratch database."
    )
    return [
        Row(LABEL, f"{size:,} numbers by CSV upload: seconds", fmt_s(web_s),
            f"Python API {fmt_s(base_s)}", web_s / base_s, f"< {fmt_s(target_s)}",
            web_s < target_s),
        Row(LABEL, f"{size:,} numbers by CSV upload: peak RSS of the service",
            f"{web_mb:.0f} MB", f"Python API process {base_mb:.0f} MB", web_mb / base_mb,
            f"< {TARGET_RSS_MB:.0f} MB", web_mb < TARGET_RSS_MB),
    ]  # fmt: skip


def _store(url: str) -> CampaignStateManager:
    store = CampaignStateManager(url, settings=Settings.from_env({"LEGAL_BASIS": "consent"}))
    store.add_session("sales", "console", "console://bench")
    return store


def _python_api(bench: Bench, numbers: Path) -> tuple[float, float]:
    url = bench.database("webapi_base")
    _store(url).dispose()
    env = {**os.environ, **bench.env(url)}
    done = subprocess.run(
        [sys.executable, "-c", _PYTHON_API, str(numbers)], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the Python API's creation failed: {done.stderr[-2000:]}")
    seconds, peak = done.stdout.split()
    return float(seconds), float(peak)


def _upload(bench: Bench, numbers: Path) -> tuple[float, float, float]:
    url = bench.database("webapi")
    store = _store(url)
    token = store.create_token("bench", "operator")
    store.dispose()
    with web_service(bench, bench.env(url), "web-api") as (base, service):
        ready_mb = _high_water_kb(service.pid) / 1024
        with numbers.open("rb") as handle:
            started = time.perf_counter()
            answer = requests.post(
                f"{base}/api/v1/campaigns", headers={"Authorization": f"Bearer {token}"},
                data={"session": "sales", "message": "Oi"},
                files={"file": (numbers.name, handle, "text/csv")}, timeout=600,
            )  # fmt: skip
            seconds = time.perf_counter() - started
        peak_mb = _high_water_kb(service.pid) / 1024
        if answer.status_code != 201:
            raise RuntimeError(f"upload answered {answer.status_code}: {answer.text[:500]}")
    return seconds, peak_mb, ready_mb
