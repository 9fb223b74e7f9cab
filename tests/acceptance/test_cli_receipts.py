"""Receipts' figures on the command line: ``status`` (text and ``--json``) shows delivered and
read with their rates over sent and per session; ``export`` carries each recipient's delivery
status and times; ``watch``'s line says them once there are some."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from campaigns.cli.watch import detail
from campaigns.domain import RecipientStatus
from campaigns.receipts import Receipt
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager
from tests.acceptance.test_cli_export import cli, env, store  # noqa: F401  (fixtures)

NUMBERS = [f"+5511{970000000 + i}" for i in range(4)]
AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _campaign(store: CampaignStateManager) -> int:  # noqa: F811
    """4 recipients sent (ids r1..r4) and counted: r1 read, r2 delivered, r3 failed late."""
    campaign = store.create_campaign(NUMBERS, "Hi", "sales", pacing=Pacing(batch_size=4))
    assert campaign.run_token
    for i in range(1, 5):
        claim = store.claim_recipient(campaign.id, 1, campaign.run_token)
        assert claim and store.record_outcome(claim, RecipientStatus.SENT, message_id=f"r{i}")
    assert store.finish_batch(campaign.id, 1, campaign.run_token)
    store.apply_receipts([Receipt("r1", "read", AT), Receipt("r2", "delivered", AT),
                          Receipt("r3", "failed", AT, "131026", "undeliverable")])  # fmt: skip
    return campaign.id


def test_status__shows_delivered_and_read_with_rates_text_and_json(
    cli: Any, store: CampaignStateManager  # noqa: F811
) -> None:
    cid = _campaign(store)
    shown = cli("status", str(cid))
    assert shown.exit_code == 0, shown.output
    assert "2 (66.7% of sent)" in shown.output  # delivered: r1 (read) and r2, of 3 sent
    assert "1 (33.3% of sent)" in shown.output  # read
    data = json.loads(cli("status", str(cid), "--json").stdout)
    assert data["delivery"]["delivered"] == 2 and data["delivery"]["read"] == 1
    assert data["delivery"]["sessions"]["sales"]["sent"] == 3
    assert store.check_invariants(cid) == []


def test_export__carries_delivery_status_and_times(
    cli: Any, store: CampaignStateManager, tmp_path: Path  # noqa: F811
) -> None:
    cid = _campaign(store)
    out = tmp_path / "ledger.csv"
    assert cli("export", str(cid), "--out", str(out)).exit_code == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["delivery_status"] for r in rows] == ["read", "delivered", "failed", ""]
    assert rows[0]["read_at"] == rows[0]["delivered_at"] == AT.isoformat()
    assert rows[2]["status"] == "failed" and rows[2]["error_code"] == "131026"


def test_watch_line__says_delivered_and_read_once_there_are_some(
    store: CampaignStateManager,  # noqa: F811
) -> None:
    cid = _campaign(store)
    line = detail(store.snapshot(cid), store.delivery_counts(cid))
    assert "delivered 2 (67%)" in line and "read 1 (33%)" in line
    assert "delivered" not in detail(store.snapshot(cid), None)
