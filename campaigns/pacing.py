"""Per-session pacing across all workers, processes and campaigns (invariant 7, fair turns).

Two consecutive sends of one session are never closer than ``min_interval``, through worker
kills, a second chain, a Redis flush or restart, or Redis coming back from an older copy. The
state lives in Redis, changed atomically by ``pacing.lua`` (its header documents every key and
the rebuild of lost or older state; :mod:`campaigns.pacing_redis` runs it), on the Redis clock.

- **Fair turns** (``human``): :meth:`SessionPacer.wait_for_turn` queues the lane in its
  session's queue; turns go to the lanes waiting now, in arrival order, the head a random gap in
  ``[min_interval, max_interval]`` after the session's last send. A cancelled wait leaves the
  queue, a dead waiter's lease lapses, nothing is reserved ahead; a turn beyond the run's
  ``budget`` raises :class:`PacingDeferred` (end the run, come back then).
- **The gap holds on the wire**: the bound is between grants, so a request must leave within
  ``guard`` of its grant. :meth:`SessionPacer.refresh` (and :class:`SendGate`, run by the HTTP
  client right before the paced request's bytes go out) re-takes a grant older than
  ``guard / 2``: moved to now if it is still the last one, else queued before every waiter.
- **``rate``**: evenly spaced send slots per session, booked a few ahead
  (:meth:`SessionPacer.acquire_rate`; never more than ``rate`` sends in one second); a
  campaign's own intervals pace its lane on a key of its own: they slow the lane, never the
  session.
- **Lost or older state**: rebuilt from the session's last send in PostgreSQL and now,
  whichever is later; a send may be in flight, so the first grant waits a full interval (a
  fresh session too). **Redis unreachable**: :class:`PacingUnavailable`; nothing is sent.

:meth:`SessionPacer.hold` backs every waiter of a session off (gateway throttling).
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis

from campaigns.constants import (
    PACING_GUARD_S,
    PACING_HANDOFF_S,
    PACING_KEY_PREFIX,
    PACING_LEASE_S,
    PACING_MIN_POLL_S,
    PACING_NEXT_POLL_S,
    PACING_STATE_TTL_S,
    PACING_STOP_POLL_S,
    RATE_MARGIN,
)
from campaigns.errors import CampaignError
from campaigns.pacing_redis import PacingScript
from campaigns.pacing_redis import PacingUnavailable as PacingUnavailable  # re-exported
from campaigns.profiles import PacingProfile

# A re-take queues before every waiter: its arrival is its old grant moved far into the past.
_PRIORITY_S = 1e10


class PacingCancelled(CampaignError):
    """The wait for a send turn was cancelled; nothing was granted."""


class PacingDeferred(CampaignError):
    """The lane's next turn lies ``wait`` seconds away, beyond the run's budget; nothing was
    granted: end the run and come back then (the lane keeps its place a little longer)."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"the next turn is {wait:.1f}s away, beyond the run's budget")
        self.wait = wait


@dataclass(frozen=True, slots=True)
class Reservation:
    """A granted send turn of a session, on the Redis clock."""

    slot_at: float  # when the turn was due (Redis clock, epoch seconds): the schedule lag's base
    wait: float  # seconds this process waited for the turn
    granted_at: float | None = None  # when the grant was made (Redis clock)
    granted_monotonic: float | None = None  # time.monotonic() when it arrived (for refresh)
    scope: str | None = None  # the pacing scope it came from; None: nothing to re-take (rate)
    lane: str | None = None
    grant_token: str | None = None
    """The grant exactly as the script recorded it (it recognises its own last grant)."""


@dataclass(frozen=True, slots=True)
class RateGrant:
    """The answer of one rate request: ``tokens`` send slots, ``spacing`` apart from ``first``
    (the Redis clock), each to be sent no earlier than its slot."""

    tokens: int  # slots granted (0 to n): that many messages may be sent, one per slot
    wait: float  # with no slot granted: seconds until there is one
    at: float  # the Redis clock when the script decided
    first: float = 0.0  # when the first slot's send may leave (Redis clock; at or later)
    spacing: float = 0.0

    def delay(self, index: int) -> float:
        """Seconds from the decision until slot ``index`` (0-based) may leave."""
        return max(0.0, self.first + index * self.spacing - self.at)


class SessionPacer:
    """Paces the sends of each session through one Redis.

    ``guard`` is added to ``min_interval`` on every grant, to cover the jitter between a grant
    and the HTTP request leaving the worker. ``rng`` draws the random gaps (seed it in tests).
    ``last_send(session)`` gives the session's last send recorded in PostgreSQL (seconds since
    the epoch, or None), read only when the Redis state has to be rebuilt.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        guard: float = PACING_GUARD_S,
        rng: random.Random | None = None,
        key_prefix: str = PACING_KEY_PREFIX,
        last_send: Callable[[str], float | None] | None = None,
        lease: float = PACING_LEASE_S,
        handoff: float = PACING_HANDOFF_S,
    ) -> None:
        if guard < 0:
            raise ValueError("guard must be >= 0")
        if lease <= 0 or handoff < 0:
            raise ValueError("lease must be > 0 and handoff >= 0")
        self.guard = guard
        self.lease = lease
        self.handoff = handoff
        self._rng = rng or random.Random()
        self.redis_client, self.key_prefix = redis_client, key_prefix  # capacity counts too
        self._redis = PacingScript(redis_client, key_prefix, last_send)

    def key(self, session: str) -> str:
        """The Redis key holding ``session``'s pacing state (the hash; see ``keys``)."""
        return self._redis.key(session)

    def keys(self, scope: str) -> list[str]:
        """Every Redis key of one pacing scope: the state hash and the queue's three sets."""
        return self._redis.keys(scope)

    # ------------------------------------------------------------------ fair turns (human)

    def wait_for_turn(
        self,
        session: str,
        min_interval: float,
        max_interval: float,
        sleep: Callable[[float], object] = time.sleep,
        stop: Callable[[], bool] | None = None,
        *,
        profile: PacingProfile | None = None,
        lane: str | None = None,
        budget: float | None = None,
    ) -> Reservation:
        """Queue for the session's next turn and wait until granted; return the grant.

        ``lane`` names the waiting lane (the campaign): a continuation that asks again with the
        same name keeps its arrival (see PACING_HANDOFF_S). ``stop`` is checked before every
        ask and at least every ``PACING_STOP_POLL_S`` while sleeping; once it answers True,
        :class:`PacingCancelled` is raised, the wait leaves the queue and no grant is taken.
        ``budget`` (seconds): when the turn is known to lie beyond it, :class:`PacingDeferred`
        is raised at once instead of waiting. A ``rate`` ``profile`` takes a token of the
        session's bucket, after the lane's own gap when the campaign has intervals.
        """
        _check_intervals(min_interval, max_interval)
        gap = self._rng.uniform(min_interval, max_interval)
        spacing = self._spacing(min_interval)
        if profile is not None and profile.is_rate:
            return self._rate_turn(
                session, profile, lane, gap, spacing, max_interval, budget, sleep, stop
            )
        return self._queue(session, session, lane, gap, spacing, budget, sleep, stop)

    def refresh(
        self,
        session: str,
        min_interval: float,
        turn: Reservation,
        sleep: Callable[[float], object] = time.sleep,
        stop: Callable[[], bool] | None = None,
    ) -> Reservation:
        """Return ``turn`` if its grant is still fresh, else re-take it (cancellable); call it
        right before the request leaves. After ``guard / 2`` (a database stall, a slow
        check-exists, a cold connect) another worker may be granted ``min_interval + guard``
        after our grant and send before us: so a stale grant moves to now if it is still the
        session's last one, else the request queues before every waiter for the next turn."""
        fresh_until = (turn.granted_monotonic or float("-inf")) + self.guard / 2
        if min_interval <= 0 or turn.scope is None or time.monotonic() <= fresh_until:
            return turn
        scope = turn.scope
        reply = self._redis.run(scope, session, "retake", [turn.grant_token or ""])
        if int(reply[0]) == 1:
            at = str(reply[2])
            return dataclasses.replace(
                turn, granted_at=float(at), granted_monotonic=time.monotonic(), grant_token=at
            )
        member = f"{turn.lane or uuid.uuid4().hex}!"
        arrival = (turn.granted_at or 0.0) - _PRIORITY_S
        again = self._queue(
            scope, session, member, 0.0, self._spacing(min_interval), None, sleep, stop,
            arrival=arrival,
        )  # fmt: skip
        return dataclasses.replace(again, slot_at=turn.slot_at, lane=turn.lane)

    def gate(
        self,
        session: str,
        min_interval: float,
        turn: Reservation,
        sleep: Callable[[float], object] = time.sleep,
        stop: Callable[[], bool] | None = None,
    ) -> SendGate:
        """The hook for :func:`campaigns.gateways.http.paced_sends` (refreshes ``turn``)."""
        return SendGate(self, session, min_interval, turn, sleep, stop)

    def hold(self, session: str, seconds: float) -> float:
        """No grant for ``session`` before now + ``seconds`` (returned). For gateway throttling:
        every worker of the session backs off; a shorter hold never shortens a longer one."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        (until,) = self._redis.run(session, session, "hold", [f"{seconds:.6f}"])
        return float(until)

    # ------------------------------------------------------------------ rate profile

    def acquire_rate(self, session: str, profile: PacingProfile, n: int = 1) -> RateGrant:
        """Book up to ``n`` send slots of a ``rate`` session (``profile.rate`` per second, less
        RATE_MARGIN, evenly spaced, at most ``profile.burst`` slots ahead); never blocks.
        ``tokens`` 0 means: wait ``wait`` seconds and ask again. The hold (throttling) moves
        the slots past it."""
        if not profile.is_rate:
            raise ValueError("acquire_rate needs a rate profile")
        if n < 1:
            raise ValueError("n must be >= 1")
        rate = profile.rate * (1 - RATE_MARGIN)
        args = [str(n), f"{rate:.6f}", str(profile.burst)]
        granted, wait, at, _, first, spacing = self._redis.run(session, session, "rate", args)
        return RateGrant(int(granted), float(wait), float(at), float(first), float(spacing))

    def wait_for_rate(
        self,
        session: str,
        profile: PacingProfile,
        n: int = 1,
        sleep: Callable[[float], object] = time.sleep,
        stop: Callable[[], bool] | None = None,
        *,
        budget: float | None = None,
    ) -> RateGrant:
        """Book between 1 and ``n`` slots, sleeping until there are (cancellable like
        :meth:`wait_for_turn`; :class:`PacingDeferred` when a hold outlasts ``budget``). The
        caller sends slot i no earlier than ``grant.delay(i)`` after the call returned."""
        waited = 0.0
        while True:
            if stop is not None and stop():
                raise PacingCancelled()
            grant = self.acquire_rate(session, profile, n)
            if grant.tokens:
                return grant
            if budget is not None and grant.wait > budget - waited:
                raise PacingDeferred(grant.wait)
            nap = max(grant.wait, PACING_MIN_POLL_S)
            _sleep(nap, sleep, stop)
            waited += nap

    # ------------------------------------------------------------------ internals

    def _spacing(self, min_interval: float) -> float:
        # no interval, nothing to guard: a zero-interval session (benchmarks, rehearsals with
        # the console gateway) must not be capped at 1/guard messages per second
        return min_interval + self.guard if min_interval > 0 else 0.0

    def _rate_turn(
        self,
        session: str,
        profile: PacingProfile,
        lane: str | None,
        gap: float,
        spacing: float,
        max_interval: float,
        budget: float | None,
        sleep: Callable[[float], object],
        stop: Callable[[], bool] | None,
    ) -> Reservation:
        started = time.monotonic()
        lane_turn = None
        if max_interval > 0:
            # the campaign's intervals pace its own lane: they slow it down, not the session
            scope = f"{session}#lane:{lane or '-'}"
            lane_turn = self._queue(scope, session, lane, gap, spacing, budget, sleep, stop)
        left = None if budget is None else budget - (time.monotonic() - started)
        grant = self.wait_for_rate(session, profile, 1, sleep, stop, budget=left)
        _sleep(grant.delay(0), sleep, stop)  # the slot may lie a little ahead
        return Reservation(
            slot_at=lane_turn.slot_at if lane_turn else grant.at,
            wait=time.monotonic() - started,
            granted_at=grant.at,
            granted_monotonic=time.monotonic(),
            scope=lane_turn.scope if lane_turn else None,
            lane=lane,
            grant_token=lane_turn.grant_token if lane_turn else None,
        )

    def _queue(
        self,
        scope: str,
        session: str,
        lane: str | None,
        gap: float,
        spacing: float,
        budget: float | None,
        sleep: Callable[[float], object],
        stop: Callable[[], bool] | None,
        *,
        arrival: float | None = None,
    ) -> Reservation:
        """Ask for the head's turn of ``scope`` until granted; leave the queue if cancelled."""
        member = lane if lane is not None else uuid.uuid4().hex
        started = time.monotonic()
        fixed = [member, f"{gap:.6f}", f"{spacing:.6f}", f"{self.lease:.6f}",
                 f"{self.handoff:.6f}"]  # fmt: skip
        try:
            while True:
                if stop is not None and stop():
                    raise PacingCancelled()
                left = "" if budget is None else f"{budget - (time.monotonic() - started):.6f}"
                placed = "" if arrival is None else f"{arrival:.6f}"
                granted, wait, at, due, _, position = self._redis.run(
                    scope, session, "turn", [*fixed, left, placed]
                )
                if int(granted) == 1:
                    token = str(at)
                    return Reservation(
                        slot_at=float(due),
                        wait=time.monotonic() - started,
                        granted_at=float(token),
                        granted_monotonic=time.monotonic(),
                        scope=scope,
                        lane=lane,
                        grant_token=token,
                    )
                if int(granted) == 2:
                    raise PacingDeferred(float(wait))
                _sleep(self._nap(float(wait), int(position)), sleep, stop)
        except PacingCancelled:
            self._redis.leave(scope, member, self.handoff)
            raise

    def _nap(self, wait: float, position: int) -> float:
        # The head sleeps until its turn (its lease covers it); the waiter next in line asks
        # often so a turn given back is taken at once; everyone else renews its lease within
        # half of it, sleeping towards its estimated turn.
        if position == 1:
            return max(wait, PACING_MIN_POLL_S)
        cap = self.lease / 2 if position != 2 else min(PACING_NEXT_POLL_S, self.lease / 2)
        return max(min(wait, cap), PACING_MIN_POLL_S)


@dataclass(slots=True)
class SendGate:
    """Runs right before a paced request's bytes leave (see
    :func:`campaigns.gateways.http.paced_sends`): re-takes the turn when its grant got stale
    and keeps the newest one. Answers True when the turn moved (time may have passed)."""

    pacer: SessionPacer
    session: str
    min_interval: float
    turn: Reservation
    sleep: Callable[[float], object] = time.sleep
    stop: Callable[[], bool] | None = None

    def __call__(self) -> bool:
        pacer = self.pacer
        fresh = pacer.refresh(self.session, self.min_interval, self.turn, self.sleep, self.stop)
        moved = fresh is not self.turn
        self.turn = fresh
        return moved


def _check_intervals(min_interval: float, max_interval: float) -> None:
    if not 0 <= min_interval <= max_interval:
        raise ValueError("need 0 <= min_interval <= max_interval")
    if max_interval >= PACING_STATE_TTL_S:
        # the pacing keys would expire between two sends, costing a full interval every time
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
