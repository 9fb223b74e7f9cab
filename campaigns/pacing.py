"""Per-session pacing across all workers, processes and campaigns (invariant 7).

Two consecutive sends of one session are never closer than ``min_interval``, through worker
kills, a second chain, a Redis flush or restart. Enforced atomically in Redis by one Lua script
(``pacing.lua``, whose header documents every key); all timestamps come from Redis ``TIME`` so
worker clocks never matter.

Two steps per message:

1. :meth:`SessionPacer.reserve` draws a random gap in ``[min_interval, max_interval]`` and takes
   the session's next slot, ``max(now, last slot or send + gap)``: human-like random spacing,
   and many workers reserving at once get distinct, ordered slots. The caller sleeps until it.
2. :meth:`SessionPacer.acquire`, right before the HTTP call, grants the send only if the last
   grant is at least ``min_interval + guard`` ago. Slots alone do not hold the bound: a worker
   late after its slot (database stall, GC pause) would otherwise send right before the next.
   The bound is between grants, so the request must leave within ``guard`` of its grant: work
   done in between (the recipient claim) is followed by :meth:`SessionPacer.refresh`, which
   acquires again when that work was slow.

**Lost Redis state** (FLUSHALL, restart without persistence, key evicted or expired): nobody
can tell whether the session sent a millisecond ago, so the first ``acquire`` after the loss
records "a send just happened" and answers "wait a full interval". This needs no PostgreSQL
read and is strictly safer than rebuilding from the last send PostgreSQL recorded, which lags
behind sends in flight. The price: a fresh session (indistinguishable from a lost one) waits
one interval before its first message.

**Redis unreachable**: every operation raises :class:`PacingUnavailable`; the engine releases
the claim and retries later. Nothing is ever sent when pacing cannot be checked.

:meth:`SessionPacer.hold` backs every worker of a session off (gateway throttling), and
:meth:`SessionPacer.wait_for_turn` runs reserve, sleep and acquire in a cancellable loop.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from campaigns.constants import (
    PACING_GUARD_S,
    PACING_KEY_PREFIX,
    PACING_STATE_TTL_S,
    PACING_STOP_POLL_S,
)
from campaigns.errors import CampaignError

_SCRIPT = (Path(__file__).parent / "pacing.lua").read_text()


class PacingUnavailable(CampaignError):
    """Redis cannot be used for pacing; nothing may be sent until it can."""


class PacingCancelled(CampaignError):
    """The wait for a send turn was cancelled; nothing was granted."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """A send slot of a session, on the Redis clock."""

    slot_at: float
    """When the send may happen (Redis clock, seconds since the epoch)."""
    wait: float
    """Seconds to sleep, from the reservation, until ``slot_at``."""
    granted_at: float | None = None
    """When :meth:`SessionPacer.wait_for_turn` got the grant (Redis clock); None before."""
    granted_monotonic: float | None = None
    """This process's ``time.monotonic()`` when the grant arrived (for ``refresh``)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer of one acquire attempt."""

    granted: bool
    """True: send now. False: sleep ``wait`` seconds and ask again."""
    wait: float
    at: float
    """The Redis clock when the script decided."""


class SessionPacer:
    """Paces the sends of each session through one Redis.

    ``guard`` is added to ``min_interval`` on every grant, to cover the jitter between a grant
    and the HTTP request leaving the worker. ``rng`` draws the random gaps (seed it in tests).
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        guard: float = PACING_GUARD_S,
        rng: random.Random | None = None,
        key_prefix: str = PACING_KEY_PREFIX,
    ) -> None:
        if guard < 0:
            raise ValueError("guard must be >= 0")
        self.guard = guard
        self._rng = rng or random.Random()
        self._prefix = key_prefix
        # register_script runs EVALSHA and reloads the script on NOSCRIPT, so a SCRIPT FLUSH
        # or a Redis restart costs one extra round trip, not an error.
        self._script = redis_client.register_script(_SCRIPT)

    def key(self, session: str) -> str:
        """The Redis key holding ``session``'s pacing state."""
        return f"{self._prefix}{session}"

    def reserve(self, session: str, min_interval: float, max_interval: float) -> Reservation:
        """Take the session's next send slot, a random gap after the previous slot or send."""
        _check_intervals(min_interval, max_interval)
        gap = self._rng.uniform(min_interval, max_interval)
        slot, wait = self._run(session, "reserve", gap)
        return Reservation(slot_at=float(slot), wait=max(float(wait), 0.0))

    def try_acquire(self, session: str, min_interval: float) -> Grant:
        """Ask to send now; granted only if the last grant is ``min_interval + guard`` ago."""
        _check_intervals(min_interval, min_interval)
        # no interval, nothing to guard: a zero-interval session (benchmarks, rehearsals with
        # the console gateway) must not be capped at 1/guard messages per second
        guard = self.guard if min_interval > 0 else 0.0
        granted, wait, at = self._run(session, "acquire", min_interval + guard)
        if int(granted) == 1:
            return Grant(granted=True, wait=0.0, at=float(at))
        # A refusal never reads as "0 seconds": acquire() would take that for a grant.
        return Grant(granted=False, wait=max(float(wait), 1e-6), at=float(at))

    def acquire(self, session: str, min_interval: float) -> float:
        """0.0: send now (the grant is recorded). Otherwise: seconds to sleep, then ask again."""
        grant = self.try_acquire(session, min_interval)
        return 0.0 if grant.granted else grant.wait

    def hold(self, session: str, seconds: float) -> float:
        """No slot and no grant for ``session`` before now + ``seconds``; returns that time.

        For gateway throttling: every worker on the session backs off, not only the one that
        was told. A shorter hold never shortens a longer one already in place.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        (until,) = self._run(session, "hold", seconds)
        return float(until)

    def wait_for_turn(
        self,
        session: str,
        min_interval: float,
        max_interval: float,
        sleep: Callable[[float], object] = time.sleep,
        stop: Callable[[], bool] | None = None,
    ) -> Reservation:
        """Reserve, sleep until the slot, then acquire until granted; return the reservation.

        ``stop`` is checked before every acquire and at least every ``PACING_STOP_POLL_S``
        while sleeping; once it answers True, :class:`PacingCancelled` is raised and no grant
        is taken (a cancelled campaign must not use up the session's turn).
        """
        reservation = self.reserve(session, min_interval, max_interval)
        _sleep(reservation.wait, sleep, stop)
        return self._acquire_loop(session, min_interval, reservation, sleep, stop)

    def refresh(
        self,
        session: str,
        min_interval: float,
        turn: Reservation,
        sleep: Callable[[float], object] = time.sleep,
        stop: Callable[[], bool] | None = None,
    ) -> Reservation:
        """Return ``turn`` if its grant is still fresh, else acquire again (cancellable).

        The bound holds between *grants*; ``guard`` covers the time from a grant to the HTTP
        request. Work done in between (claiming the recipient in PostgreSQL) must fit in it:
        if more than ``guard / 2`` passed here since the grant (a database stall), another
        worker may be granted ``min_interval + guard`` after our grant and send before us, so
        we queue behind the grants made meanwhile instead. Call it right before the request.
        """
        fresh_until = (turn.granted_monotonic or float("-inf")) + self.guard / 2
        if min_interval <= 0 or time.monotonic() <= fresh_until:
            return turn
        return self._acquire_loop(session, min_interval, turn, sleep, stop)

    def _acquire_loop(
        self,
        session: str,
        min_interval: float,
        turn: Reservation,
        sleep: Callable[[float], object],
        stop: Callable[[], bool] | None,
    ) -> Reservation:
        while True:
            grant = self.try_acquire(session, min_interval)
            if grant.granted:
                return dataclasses.replace(
                    turn, granted_at=grant.at, granted_monotonic=time.monotonic()
                )
            _sleep(grant.wait, sleep, stop)

    def _run(self, session: str, op: str, arg: float) -> list[Any]:
        try:
            result = self._script(
                keys=[self.key(session)], args=[op, f"{arg:.6f}", PACING_STATE_TTL_S]
            )
        except redis.RedisError as exc:
            # Connection refused or cut, timeout, loading, OOM, read-only replica: whatever it
            # is, the pacing state cannot be checked, so the caller must not send.
            raise PacingUnavailable(session=session, operation=op, cause=str(exc)) from exc
        return list(result)


def _check_intervals(min_interval: float, max_interval: float) -> None:
    if not 0 <= min_interval <= max_interval:
        raise ValueError("need 0 <= min_interval <= max_interval")
    if max_interval >= PACING_STATE_TTL_S:
        # the pacing key would expire between two sends, costing a full interval every time
        raise ValueError("max_interval must be below PACING_STATE_TTL_S")


def _sleep(
    seconds: float, sleep: Callable[[float], object], stop: Callable[[], bool] | None
) -> None:
    """Sleep ``seconds`` in short steps, checking ``stop`` before each and at the end."""
    remaining = seconds
    while True:
        if stop is not None and stop():
            raise PacingCancelled()
        if remaining <= 0:
            return
        step = min(remaining, PACING_STOP_POLL_S)
        sleep(step)
        remaining -= step
