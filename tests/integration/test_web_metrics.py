"""``GET /metrics`` of the running web service (real loopback HTTP), parsed with Prometheus's
own parser: the content type, this process's counters, campaigns and down lanes as the store
has them, and, with PROMETHEUS_MULTIPROC_DIR, what another process wrote to the shared
directory.

prometheus_client picks multiprocess mode when it is first imported; it is imported (with this
module) before any test sets the variable, and ``monkeypatch`` removes the variable afterwards:
this process stays in single-process mode and no other test sees the directory. The writer is a
separate interpreter started with the variable in its own environment, which exits before the
scrape (its counters stay in the directory, as a dead worker's do).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import prometheus_client.values
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from campaigns import metrics
from campaigns.domain import CampaignStatus, StopKind
from campaigns.settings import Settings
from campaigns.state import CampaignStateManager
from campaigns.web.app import create_app
from campaigns.web.server import running
from tests.conftest import ROOT

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    answer = requests.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == metrics.CONTENT_TYPE
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def service(store: CampaignStateManager) -> Iterator[str]:
    with running(create_app(store, resume=lambda s, r: None, env={})) as url:
        yield url


def test_metrics__are_this_process_counters_and_the_store_campaigns_by_status(
    service: str, store: CampaignStateManager, console_session: str
) -> None:
    running_one = store.create_campaign(["+5511999990001"], "hi", console_session,
                                        legal_basis="consent")  # fmt: skip
    blocked = store.create_campaign(["+5511999990002"], "hi", console_session,
                                    legal_basis="consent")  # fmt: skip
    store.mark_lane_down(blocked.id, console_session, "token refused", kind=StopKind.BLOCKED)
    assert store.get_campaign(blocked.id).status is CampaignStatus.INTERRUPTED
    metrics.recovered("watcher")
    samples = scrape(service)

    assert sample(samples, "campaigns_store_up") == 1
    assert sample(samples, "campaigns_campaigns", status="running", stop_kind="",
                  waiting="false") == 1  # fmt: skip
    assert sample(samples, "campaigns_campaigns", status="interrupted", stop_kind="blocked",
                  waiting="false") == 1  # fmt: skip
    assert sample(samples, "campaigns_lanes_down", session=console_session,
                  stop_kind="blocked") == 1  # fmt: skip
    assert (sample(samples, "campaigns_heartbeat_age_seconds", status="running") or 0) >= 0
    assert (sample(samples, "campaigns_recoveries_total", trigger="watcher") or 0) >= 1
    assert running_one.id != blocked.id


def test_metrics__with_a_multiproc_dir_show_what_another_process_wrote(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # this process chose single-process mode at import: setting the variable now only points
    # the service's aggregation at the directory (and monkeypatch takes it away again)
    assert prometheus_client.values.ValueClass is prometheus_client.values.MutexValue
    writer = textwrap.dedent(
        """
        from campaigns import metrics

        class Gateway:
            kind = "console"

        for _ in range(3):
            metrics.send_answered("other-process", Gateway(), "sent", 0.3)
        metrics.send_answered("other-process", Gateway(), "throttled", 0.1)
        metrics.waited("window", 60)
        metrics.pacing_lag("other-process", 0.02)
        metrics.recovered("worker_start", 2)
        metrics.receipt_applied("read", "cloud")
        """
    )
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", writer], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert any(tmp_path.iterdir()), "the writer left no file in the directory"
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))

    samples = scrape(service)

    messages = "campaigns_messages_total"
    assert sample(samples, messages, outcome="sent", session="other-process",
                  gateway="console") == 3  # fmt: skip
    assert sample(samples, messages, outcome="throttled", session="other-process",
                  gateway="console") == 1  # fmt: skip
    assert sample(samples, "campaigns_send_seconds_count", gateway="console") == 4
    assert sample(samples, "campaigns_waits_total", reason="window") == 1
    assert sample(samples, "campaigns_wait_seconds_total", reason="window") == 60
    assert sample(samples, "campaigns_pacing_lag_seconds_count", session="other-process") == 1
    assert sample(samples, "campaigns_recoveries_total", trigger="worker_start") == 2
    assert sample(samples, "campaigns_receipts_total", status="read", dialect="cloud") == 1
    assert sample(samples, "campaigns_store_up") == 1  # the store gauges come along


def test_metrics__answer_with_the_store_down(settings: Settings) -> None:
    down = CampaignStateManager("postgresql+psycopg2://postgres@127.0.0.1:1/none",
                                settings=settings)  # fmt: skip
    try:
        with running(create_app(down, resume=lambda s, r: None, env={})) as url:
            samples = scrape(url)
        assert sample(samples, "campaigns_store_up") == 0
        assert not any(name == "campaigns_campaigns" for name, _ in samples)
    finally:
        down.dispose()
