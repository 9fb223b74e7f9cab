"""Sender capacity: caps per session, warm-up, and Meta's messaging limit per portfolio.

A number is banned or capped for sending too much too soon, not for sending too fast, so each
session may carry (as options, checked by ``sessions add``):

=================  ===========================================================================
option             meaning (default)
=================  ===========================================================================
``cap_day``        messages per rolling 24 h of this session, over every campaign (none)
``cap_hour``       messages per rolling hour (none)
``warmup``         a daily cap growing by day since the session's first send, e.g.
                   ``20,50,100,200`` (day 1: 20, day 2: 50, ...; after the last day ``cap_day``
                   alone applies); ``default`` is :data:`DEFAULT_WARMUP`
``new``            ``true`` marks a WAHA/Evolution number as new: it gets the default warm-up
                   unless ``warmup`` says otherwise (``false``)
``portfolio``      Cloud API: the business portfolio the number belongs to; Meta's messaging
                   limit is shared by all its numbers (the session's own name: a portfolio of
                   one)
``tier``           Cloud API: the portfolio's messaging limit, unique recipients per rolling
                   24 h: 250, 2000, 10000, 100000 or unlimited (250, a new portfolio's)
=================  ===========================================================================

The counts live in Redis (``capacity.lua``), so every worker and campaign shares them, and are
rebuilt from the ledger (the sends PostgreSQL recorded in the last 24 h) when Redis lost them.
Capacity is taken right before a send leaves; a send that never left gives it back. A crash
between the take and the record, right after a Redis flush, can let at most the lane's
in-flight sends past a cap: the rebuild sees only recorded sends.

Out of capacity, a lane waits until capacity returns (it leaves the rotation of a pool while
the other lanes go on); nothing fails and nothing is interrupted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from campaigns.caps import DAY_S, Caps
from campaigns.errors import StoreUnavailable
from campaigns.pacing_redis import PacingUnavailable

log = logging.getLogger("campaigns.capacity")

_SCRIPT = (Path(__file__).parent / "capacity.lua").read_text()


@dataclass(frozen=True, slots=True)
class Taken:
    """What :meth:`SessionCapacity.take` granted: the first ``granted`` sends of the group;
    when fewer than asked, ``wait`` seconds until the next could be, and which cap said no."""

    granted: int
    wait: float = 0.0
    why: str = ""


WHY = {
    "day": "its cap per 24 h",
    "hour": "its cap per hour",
    "portfolio": "its portfolio's messaging limit",
}


class SessionCapacity:
    """Takes capacity for sends of a session, on one Redis, rebuilding lost counts from the
    ledger. ``sends_since(sessions, seconds)`` gives the ledger's recorded sends of those
    sessions in the last ``seconds`` (``(epoch seconds, send id, phone)`` rows)."""

    def __init__(
        self,
        redis_client: redis.Redis,
        sends_since: Callable[[Sequence[str], float], list[tuple[float, str, str]]],
        portfolio_sessions: Callable[[str], list[str]],
        *,
        day: float = DAY_S,
        key_prefix: str = "cc:",
    ) -> None:
        self._prefix = key_prefix
        self._script = redis_client.register_script(_SCRIPT)
        self._sends_since = sends_since
        self._portfolio_sessions = portfolio_sessions
        self.day = day
        self._lock = threading.Lock()

    def take(
        self, session: str, caps: Caps, sends: Sequence[tuple[str, str]], day: int | None = None
    ) -> Taken:
        """Take capacity for ``sends`` (``(send id, phone)``, in order) on ``session``:
        all of them, or the prefix that fits. ``day``: the session's warm-up day."""
        if not caps.limited or not sends:
            return Taken(len(sends))
        cap_day = caps.day_cap(day)
        args: list[Any] = [
            f"{self.day:.6f}",
            -1 if cap_day is None else cap_day,
            -1 if caps.per_hour is None else caps.per_hour,
            -1 if caps.tier is None else caps.tier,
            len(sends),
        ]
        for send_id, phone in sends:
            args += [send_id, phone]
        keys = self._keys(session, caps)
        for _ in range(3):  # at most one rebuild of each count
            reply = self._eval(keys, args)
            if _text(reply[0]) == "rebuild":
                self._rebuild(session, caps, keys, _text(reply[1]))
                continue
            return Taken(int(reply[0]), float(_text(reply[1])), _text(reply[2]))
        raise PacingUnavailable(session=session, operation="capacity", cause="rebuild refused")

    def give_back(self, session: str, caps: Caps, send_ids: Sequence[str]) -> None:
        """Sends that never left give their place back (best effort: a place kept only makes
        the cap stricter, until it ages out)."""
        if not caps.counted or not send_ids:
            return
        try:
            self._eval(self._keys(session, caps), ["give", *send_ids])
        except PacingUnavailable:
            log.info("could not give back %s capacity places of %s", len(send_ids), session)

    def _keys(self, session: str, caps: Caps) -> list[str]:
        portfolio = caps.portfolio or session
        return [
            f"{self._prefix}cap:{session}",
            f"{self._prefix}cap:{session}:built",
            f"{self._prefix}portfolio:{portfolio}",
            f"{self._prefix}portfolio:{portfolio}:built",
        ]

    def _rebuild(self, session: str, caps: Caps, keys: list[str], which: str) -> None:
        """Load the last day of recorded sends of the session (or of every session of its
        portfolio) into Redis, and mark the count as built."""
        with self._lock:
            if which == "portfolio":
                sessions = self._portfolio_sessions(caps.portfolio or session)
            else:
                sessions = [session]
            try:
                rows = self._sends_since(sessions or [session], self.day)
            except StoreUnavailable as exc:
                raise PacingUnavailable(session=session, operation="capacity rebuild") from exc
            log.info(
                "capacity counts of %s %s lost; rebuilt from %s sends of the ledger",
                which,
                caps.portfolio if which == "portfolio" else session,
                len(rows),
            )
            args: list[Any] = ["load", f"{self.day:.6f}", which]
            for at, send_id, phone in rows:
                args += [f"{at:.6f}", phone if which == "portfolio" else send_id]
            self._eval(keys, args)

    def _eval(self, keys: list[str], args: list[Any]) -> list[Any]:
        try:
            reply = self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise PacingUnavailable(operation="capacity", cause=str(exc)) from exc
        return reply if isinstance(reply, list) else [reply]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

