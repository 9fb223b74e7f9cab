"""A campaign's send window is stored with it, and the ETA counts only open time: the
campaign's window and its sessions' windows, in wall-clock seconds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaigns.errors import InvalidArgument
from campaigns.processor import CampaignBatchProcessor
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager
from campaigns.windows import parse_window

NUMBERS = [f"+5511{900000000 + i}" for i in range(5)]
PACING = Pacing(
    batch_size=5, min_interval=3600, max_interval=3600, batch_delay_min=0, batch_delay_max=0
)
MONDAY_9 = datetime(2025, 6, 9, 9, tzinfo=UTC)


def test_create_campaign__stores_the_window_and_the_snapshot_uses_it(
    store: CampaignStateManager, console_session: str
) -> None:
    window = parse_window("08:00-12:00", "mon-fri")
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACING, window=window)
    assert campaign.send_window == window.to_json()
    snap = store.snapshot(campaign.id)
    assert snap.lane_windows == ((window,),) and snap.windows == (window,)
    # five hours of work, three of them today from 09:00, two on Tuesday from 08:00
    assert snap.eta_seconds(MONDAY_9) == (24 + 1) * 3600


def test_eta__the_sessions_window_narrows_the_campaigns(store: CampaignStateManager) -> None:
    store.add_session("shop", "console", "console://local", window_hours="10:00-11:00")
    window = parse_window("08:00-12:00")
    campaign = store.create_campaign(NUMBERS[:2], "Hi", "shop", pacing=PACING, window=window)
    snap = store.snapshot(campaign.id)
    assert snap.windows == (window, parse_window("10:00-11:00"))
    assert snap.eta_seconds(MONDAY_9) == (24 + 2) * 3600  # 10-11 today, 10-11 tomorrow


def test_eta__without_windows_is_the_pacing_alone(
    store: CampaignStateManager, console_session: str
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACING)
    snap = store.snapshot(campaign.id)
    assert campaign.send_window is None and snap.windows == ()
    assert snap.eta_seconds(MONDAY_9) == 5 * 3600


def test_processor__refuses_a_bad_window_or_one_that_never_overlaps_the_session(
    store: CampaignStateManager,
) -> None:
    store.add_session("night", "console", "console://local", window_hours="20:00-22:00")
    processor = CampaignBatchProcessor(enqueue=lambda *args: None)
    processor.set_state_manager(store)
    with pytest.raises(InvalidArgument, match="window must be a SendWindow"):
        processor.process_large_campaign_array(NUMBERS, "Hi", "night", window="08:00-12:00")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="never overlaps session night"):
        processor.process_large_campaign_array(
            NUMBERS, "Hi", "night", window=parse_window("08:00-12:00")
        )
    assert store.list_campaigns() == []
    cid = processor.process_large_campaign_array(
        NUMBERS, "Hi", "night", window=parse_window("21:00-23:00")
    )
    assert store.get_campaign(cid).send_window == parse_window("21:00-23:00").to_json()
