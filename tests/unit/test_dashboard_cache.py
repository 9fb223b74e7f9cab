"""The dashboard's shared view cache: however many dashboards poll at once, a campaign's view
is computed by one caller at a time, and a view of another status is never served; and the
timeline's tail, which keeps a night's interruption and recovery however many batches follow."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest

from campaigns.store import CampaignStateManager
from campaigns.timeline import CampaignEvent, EventKind
from campaigns.web.dashboard.cache import ANY_CAMPAIGN, TimelineTail, TtlCache

CALLERS = 20


def _slow(counter: list[int], value: str, seconds: float = 0.2) -> Callable[[], str]:
    lock = threading.Lock()

    def compute() -> str:
        with lock:
            counter.append(1)
        time.sleep(seconds)  # a ledger scan under load: long enough for every caller to arrive
        return value

    return compute


def _all_at_once(call: Callable[[], str]) -> list[str]:
    """``call`` from :data:`CALLERS` threads released together; their answers."""
    answers: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CALLERS)

    def one() -> None:
        start.wait()
        answer = call()
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=one) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == CALLERS
    return answers


def test_first_view__computed_once_however_many_ask_at_once() -> None:
    cache, computed = TtlCache(), list[int]()
    answers = _all_at_once(
        lambda: cache.get(("live", 1), ("running", 1), 2.0, _slow(computed, "fresh"))
    )
    assert computed == [1]
    assert answers == ["fresh"] * CALLERS


def test_expired_view__refreshed_once_while_the_others_get_the_last_one() -> None:
    cache, computed = TtlCache(), list[int]()
    cache.get(("live", 1), ("running", 1), 0.0, lambda: "old")  # expired at once
    # a batch finished since (updated_at moved): same status, a newer version
    answers = _all_at_once(
        lambda: cache.get(("live", 1), ("running", 2), 2.0, _slow(computed, "new"))
    )
    assert computed == [1]
    assert answers.count("new") == 1
    assert answers.count("old") == CALLERS - 1
    assert cache.get(("live", 1), ("running", 2), 2.0, lambda: "never") == "new"


def test_view_of_another_status__never_served() -> None:
    cache, computed = TtlCache(), list[int]()
    cache.get(("live", 1), ("running", 1), 60.0, lambda: "running view")
    # paused since: everyone waits for the paused view, computed once
    answers = _all_at_once(
        lambda: cache.get(("live", 1), ("paused", 2), 60.0, _slow(computed, "paused view"))
    )
    assert computed == [1]
    assert answers == ["paused view"] * CALLERS


def test_drop__forgets_a_campaigns_views_only() -> None:
    cache = TtlCache()
    cache.get(("live", 1), ("running", 1), 60.0, lambda: "one")
    cache.get(("row", 1), ("running", 1), 60.0, lambda: "one row")
    cache.get(("live", 2), ("running", 1), 60.0, lambda: "two")
    cache.drop(1)
    assert len(cache) == 1
    assert cache.get(("live", 1), ("running", 1), 60.0, lambda: "again") == "again"
    assert cache.get(("live", 2), ("running", 1), 60.0, lambda: "never") == "two"


def test_drop__also_forgets_the_views_of_several_campaigns() -> None:
    cache = TtlCache()
    cache.get(("list-html:read:", ANY_CAMPAIGN), (), 60.0, lambda: "the list")
    cache.get(("live", 2), ("running", 1), 60.0, lambda: "two")
    cache.drop(1)  # an action on campaign 1: the list shows it too
    assert cache.recent(("list-html:read:", ANY_CAMPAIGN), 60.0) is None
    assert cache.recent(("live", 2), 60.0) == "two"


def test_recent__the_view_of_less_than_max_age_whatever_its_version() -> None:
    cache = TtlCache()
    assert cache.recent(("live", 1), 2.0) is None
    cache.get(("live", 1), ("running", 1), 0.05, lambda: "view")
    assert cache.recent(("live", 1), 2.0) == "view"  # expired for get, still recent
    time.sleep(0.06)
    assert cache.recent(("live", 1), 0.05) is None
    assert cache.recent(("live", 1), 2.0) == "view"


def test_a_failed_computation__lets_the_next_caller_try() -> None:
    cache = TtlCache()

    def boom() -> str:
        raise RuntimeError("database away")

    with pytest.raises(RuntimeError):
        cache.get(("live", 1), ("running", 1), 2.0, boom)
    assert cache.get(("live", 1), ("running", 1), 2.0, lambda: "back") == "back"


class _Events:
    """A store's ``events`` verb over a fixed list (oldest first by id), counting its calls."""

    def __init__(self, events: list[CampaignEvent]) -> None:
        self.events, self.calls = events, 0

    def add(self, kind: EventKind, **fields: Any) -> None:
        self.events.append(CampaignEvent(id=len(self.events) + 1, campaign_id=1,
                                         at=datetime.now(UTC), kind=kind, **fields))  # fmt: skip

    def __call__(self, campaign_id: int, *, after_id: int, limit: int) -> list[CampaignEvent]:
        self.calls += 1
        return [e for e in self.events if e.id > after_id][:limit]


def test_timeline__a_nights_interruption_stays_after_hundreds_of_batches() -> None:
    events = _Events([])
    events.add(EventKind.CREATED)
    for batch in range(1, 101):
        events.add(EventKind.BATCH_DONE, batch_number=batch)
    events.add(EventKind.INTERRUPTED, detail="disconnected: session dropped")
    events.add(EventKind.RECOVERED, trigger="watcher", batch_number=101, position=200_001)
    for batch in range(101, 1301):
        events.add(EventKind.BATCH_DONE, batch_number=batch)
    store = cast(CampaignStateManager, SimpleNamespace(events=events))
    tail = TimelineTail()

    shown = tail.newest(store, 1)

    kinds = [e.kind for e in shown]
    assert kinds[-3:] == [EventKind.RECOVERED, EventKind.INTERRUPTED, EventKind.CREATED]
    batches = [e.batch_number for e in shown if e.kind == EventKind.BATCH_DONE]
    assert batches == list(range(1300, 1300 - TimelineTail.KEEP_BATCHES, -1))
    # a later poll reads only what is new: one empty page, then one event
    calls = events.calls
    assert tail.newest(store, 1) == shown and events.calls == calls + 1
    events.add(EventKind.COMPLETED)
    assert tail.newest(store, 1)[0].kind == EventKind.COMPLETED
