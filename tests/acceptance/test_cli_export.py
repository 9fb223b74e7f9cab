"""``campaigns export ID --format csv|jsonl``, in process against a real PostgreSQL: every
column (claim and finish times, the variant) in both formats, ``--json`` kept as the older
spelling of ``--format jsonl``, masked numbers unless ``--full-numbers``, an opted-out
recipient exported skipped with its reason, and bad options refused before anything is written.
(The export's sessions of a pool are tested in test_cli_lanes.py.)"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from campaigns.cli.export import COLUMNS
from campaigns.domain import RecipientStatus
from campaigns.masking import mask_phone
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager
from tests.acceptance.cli_helpers import cli_store, invoker

PACING = Pacing(batch_size=5, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)
NUMBERS = [f"+5511{970000000 + i}" for i in range(5)]
# the deployment default basis; harmless where campaigns do not ask for one
LEGAL = {"LEGAL_BASIS": "consent"}


@pytest.fixture
def env(stack_env: dict[str, str]) -> dict[str, str]:
    return {**stack_env, **LEGAL}


@pytest.fixture
def cli(env: dict[str, str]) -> Any:
    return invoker(env)


@pytest.fixture
def store(database_url: str, env: dict[str, str]) -> Iterator[CampaignStateManager]:
    with cli_store(database_url, env, "sales") as manager:
        yield manager


def sent_campaign(store: CampaignStateManager) -> int:
    """Recipient 1 sent (variant "b"), 2 failed (variant "a"), 3 opted out before its claim
    (skipped by the claim that took 4), 4 cut off (unknown), 5 pending."""
    store.add_optout(NUMBERS[2])
    campaign = store.create_campaign(NUMBERS, "Hi", "sales", pacing=PACING)
    cid, token = campaign.id, campaign.run_token or ""
    with store.engine.begin() as conn:  # the content chooser's labels, as creation stores them
        conn.execute(
            text(
                "UPDATE campaign_recipients SET variant = CASE position WHEN 1 THEN 'b' "
                "WHEN 2 THEN 'a' END WHERE campaign_id = :id"
            ),
            {"id": cid},
        )
    first = store.claim_for_lane(cid, 1, token, "sales")
    assert first is not None and store.record_outcome(
        first, RecipientStatus.SENT, message_id="wamid.1"
    )
    second = store.claim_for_lane(cid, 1, token, "sales")
    assert second is not None and store.record_outcome(
        second, RecipientStatus.FAILED, error_code="131026", error_message="not on WhatsApp"
    )
    third = store.claim_for_lane(cid, 1, token, "sales")
    assert third is not None and third.phone == NUMBERS[3]
    assert store.record_outcome(third, RecipientStatus.UNKNOWN, error_code="timeout")
    return cid


def test_export__csv_carries_every_column_with_claim_time_and_variant(
    cli: Any, store: CampaignStateManager, tmp_path: Path
) -> None:
    cid = sent_campaign(store)
    out = tmp_path / "ledger.csv"

    written = cli("export", str(cid), "--format", "csv", "--out", str(out), "--full-numbers")

    assert written.exit_code == 0, written.output
    assert f"5 recipients of campaign {cid} written to {out}" in written.stderr
    with out.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == COLUMNS
    rows = list(csv.DictReader(out.open(newline="")))
    assert [r["phone"] for r in rows] == NUMBERS
    assert [r["status"] for r in rows] == ["sent", "failed", "skipped", "unknown", "pending"]
    assert [r["variant"] for r in rows] == ["b", "a", "", "", ""]
    assert [r["session"] for r in rows] == ["sales", "sales", "sales", "sales", ""]
    assert rows[0]["gateway_message_id"] == "wamid.1"
    assert (rows[1]["error_code"], rows[1]["error_message"]) == ("131026", "not on WhatsApp")
    assert rows[2]["error_code"] == "opted_out" and "opt-out list" in rows[2]["error_message"]
    ledger = {r["position"]: r for r in store.recipients(cid)}
    assert rows[0]["claimed_at"] == ledger[1]["claimed_at"].isoformat()
    assert rows[0]["finished_at"] == ledger[1]["finished_at"].isoformat()
    assert rows[2]["claimed_at"] == ""  # skipped at its claim: never claimed
    assert rows[3]["claimed_at"] and rows[3]["error_code"] == "timeout"
    assert rows[4]["claimed_at"] == rows[4]["finished_at"] == ""


def test_export__jsonl_with_format_or_json_masks_numbers_by_default(
    cli: Any, store: CampaignStateManager
) -> None:
    cid = sent_campaign(store)

    by_format = cli("export", str(cid), "--format", "jsonl")
    by_flag = cli("export", str(cid), "--json")

    assert by_format.exit_code == 0, by_format.output
    assert by_flag.stdout == by_format.stdout
    lines = [json.loads(line) for line in by_format.stdout.splitlines()]
    assert [tuple(line) for line in lines] == [COLUMNS] * 5
    assert [line["phone"] for line in lines] == [mask_phone(n) for n in NUMBERS]
    assert not any(n in by_format.stdout for n in NUMBERS)
    assert [line["variant"] for line in lines] == ["b", "a", None, None, None]
    assert lines[0]["claimed_at"] is not None and lines[4]["claimed_at"] is None
    assert (lines[0]["position"], lines[0]["batch"], lines[0]["attempts"]) == (1, 1, 1)


def test_export__status_filter_in_either_format(cli: Any, store: CampaignStateManager) -> None:
    cid = sent_campaign(store)

    shown = cli("export", str(cid), "--status", "skipped", "--full-numbers")
    as_lines = cli("export", str(cid), "--status", "failed", "--format", "jsonl")

    assert shown.exit_code == 0, shown.output
    [skipped] = list(csv.DictReader(io.StringIO(shown.stdout)))
    assert skipped["phone"] == NUMBERS[2]
    [failed] = [json.loads(line) for line in as_lines.stdout.splitlines()]
    assert failed["error_code"] == "131026"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--format", "xml"], "'xml' is not one of"),
        (["--format", "csv", "--json"], "--json means --format jsonl"),
    ],
)
def test_export__a_bad_format_is_a_usage_error_and_writes_nothing(
    cli: Any, store: CampaignStateManager, tmp_path: Path, args: list[str], words: str
) -> None:
    cid = sent_campaign(store)
    out = tmp_path / "none.csv"

    result = cli("export", str(cid), "--out", str(out), *args)

    assert result.exit_code == 2, result.output
    assert words in result.stderr and "Traceback" not in result.output
    assert not out.exists()
