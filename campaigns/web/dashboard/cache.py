"""The dashboard's shared cache of computed views: one computation per campaign and view at a
time, whatever the number of open dashboards.

Why it is more than a dict with expiry times: a moving campaign's view reads its whole ledger
(status counts, per-session counts, the per-minute chart), and 50 dashboards polling every
2 s ask for it 25 times a second. With a plain expiring entry, every request that arrived
while the entry was being recomputed recomputed it too: measured with 50 dashboards on a
72,000-number campaign, a dozen identical ledger scans at once and the send rate down to
0.5-0.7 of its rate without dashboards. So:

- one computation per key at a time (single flight): the others wait for it, or
- while a view of the same *kind* of state exists (same campaign status), they get that one,
  at most one refresh behind, and only the first caller after expiry computes;
- a view computed for another status (paused since, completed since) is never served: the
  callers wait for the fresh one, so an action's result never shows the old buttons;
- a view is kept for its time-to-live or :data:`COST_SHARE` times what it took to compute,
  whichever is longer, so its cost stays bounded on the largest campaigns;
- views the pages share (a campaign's snapshot, its delivery counts) are cached once, under
  their own key, and used by both the campaigns list and the campaign page.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from campaigns.store import CampaignStateManager
from campaigns.timeline import EventKind

T = TypeVar("T")
MAX_KEYS = 10_000
"""Campaigns come and go: the cache is emptied rather than grown without bound."""
COST_SHARE = 10
"""A view is kept at least ``COST_SHARE`` times as long as it took to compute: on a campaign
whose view takes 0.5 s to compute, 5 s instead of the 2 s poll period."""


ANY_CAMPAIGN = 0
"""The campaign id of views that show several campaigns (the list's pages): any campaign's
action drops them too. Campaign ids start at 1."""


class TtlCache:
    """Views keyed by ``(kind, campaign id)``, each stored with the version of the campaign it
    was computed for (``(status, updated_at)``: a batch done moves ``updated_at``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # key: (expires at, version, value, computed at), on the monotonic clock
        self._values: dict[tuple[str, int], tuple[float, tuple[Hashable, ...], Any, float]] = {}
        self._flights: dict[tuple[str, int], threading.Lock] = {}
        self.timeline = TimelineTail()

    def get(
        self,
        key: tuple[str, int],
        version: tuple[Hashable, ...],
        ttl: float,
        compute: Callable[[], T],
    ) -> T:
        """The view for ``key`` computed for ``version`` less than ``ttl`` seconds ago, else a
        fresh one (computed by one caller at a time). A view of an older version with the same
        first element (the status) is returned while another caller refreshes it."""
        with self._lock:
            found = self._values.get(key)
            flight = self._flights.setdefault(key, threading.Lock())
        if found is not None and found[1] == version and found[0] > time.monotonic():
            value: T = found[2]
            return value
        same_kind = found is not None and found[1][:1] == version[:1]
        if same_kind and not flight.acquire(blocking=False):
            stale: T = found[2]  # type: ignore[index]
            return stale  # being refreshed by another caller: this one is at most a poll old
        if not same_kind:
            flight.acquire()  # nothing servable: wait for whoever computes it, then look again
        try:
            with self._lock:
                found = self._values.get(key)
            if found is not None and found[1] == version and found[0] > time.monotonic():
                ready: T = found[2]
                return ready
            started = time.monotonic()
            value = compute()
            took = time.monotonic() - started
            with self._lock:
                if len(self._values) > MAX_KEYS:
                    self._values.clear()
                    self._flights.clear()  # a flight running now merely runs once more
                # a view that took long (a huge ledger, a loaded database) is kept longer, so
                # that recomputing it never takes more than 1/COST_SHARE of a connection's time
                now = time.monotonic()
                self._values[key] = (now + max(ttl, took * COST_SHARE), version, value, now)
            return value
        finally:
            flight.release()

    def recent(self, key: tuple[str, int], max_age: float) -> Any | None:
        """The view stored for ``key`` if it was computed less than ``max_age`` seconds ago,
        whatever its version; else None. A poll answered from it reads nothing from the
        database: what another process changed since (a worker's batch, a completion) shows
        at most ``max_age`` later, and this process's own actions drop their views."""
        with self._lock:
            found = self._values.get(key)
        if found is None or time.monotonic() - found[3] >= max_age:
            return None
        return found[2]

    def drop(self, campaign_id: int) -> None:
        """Forget every view of a campaign, and the views of several campaigns (after an
        action: its result shows at once)."""
        with self._lock:
            gone = [k for k in self._values if k[1] in (campaign_id, ANY_CAMPAIGN)]
            for key in gone:
                del self._values[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)


class TimelineTail:
    """A campaign's timeline for its page, read incrementally: the store pages events oldest
    first after an id, so each poll asks only for those after the last one seen (one indexed
    query), and a long campaign's thousands of batch events are read once.

    What is kept: every event that is not a batch done (creation, interruptions with their
    reason, recoveries with their trigger and position, pauses, lanes down and up, waits), up
    to :attr:`KEEP_NOTABLE`, and the newest :attr:`KEEP_BATCHES` batches done. Keeping only the
    newest events of any kind pushed a night's interruption and recovery out of the page after
    fifty batches, which is what an operator looks for in the morning."""

    KEEP_NOTABLE = 500
    KEEP_BATCHES = 20

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tails: dict[int, tuple[int, list[Any], list[Any]]] = {}

    def newest(self, store: CampaignStateManager, campaign_id: int) -> list[Any]:
        """The kept events, newest first."""
        with self._lock:
            last, notable, batches = self._tails.get(campaign_id, (0, [], []))
        while True:
            page = store.events(campaign_id, after_id=last, limit=1000)
            if not page:
                break
            notable = notable + [e for e in page if e.kind != EventKind.BATCH_DONE]
            batches = batches + [e for e in page if e.kind == EventKind.BATCH_DONE]
            notable, batches = notable[-self.KEEP_NOTABLE :], batches[-self.KEEP_BATCHES :]
            last = page[-1].id
            if len(page) < 1000:
                break
        with self._lock:
            self._tails[campaign_id] = (last, notable, batches)
        return sorted([*notable, *batches], key=lambda e: e.id, reverse=True)
