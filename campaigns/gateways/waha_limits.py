"""What WAHA says about WhatsApp's limits on a number: 475 capping and 463 reach-out timelock.

Kept apart from :mod:`campaigns.gateways.waha` (the send path) because both the send answer and
the session info carry them, and the readers are all shape-guessing.

**Reach-out timelock (463)** — documented ([WAHA-DOCS: content/docs/how-to/sessions/
reachout-timelock-callout.md]): the session stays WORKING, sends to new contacts fail with
``server returned error 463``, and ``reachoutTimelock`` comes "in ``session.status`` ``data`` or
in the ``me`` info" with ``isActive`` and ``timeEnforcementEnds`` (unix seconds); WAHA itself
blocks no call, and the docs say not to restart, log out or re-pair the session. Read from
``me.reachoutTimelock`` of ``GET /api/sessions/{session}`` (the docs: the same ``me`` info is in
that answer), also from a top-level ``reachoutTimelock`` or ``timelock`` object (``isActive`` or
``active`` true). A timelock is a ``blocked`` stop (design.md: only an operator resumes), with
its end as ``until`` when told.

**Capping (475)** — UNCONFIRMED: no public source gives how WAHA reports it. WhatsApp's own
answer (the WA Web query ``xwa2_message_capping_info``, as a GOWS engine reads it) has
``capping_status``, ``total_quota``, ``used_quota``, ``cycle_start_timestamp`` and
``cycle_end_timestamp``. We read, in camelCase like WAHA's other fields and also in that snake
case: ``cappingStatus`` and the cycle end ``cycleEndTimestamp`` (epoch seconds; a value past
1e11 is taken as milliseconds) or ``cycleEnd`` (ISO 8601), in a 500's ``exception`` object or at
the body's top level, and in the session info's ``capping`` object (``status``,
``cycleEndTimestamp``/``cycleEnd``). A capping status of ``CAPPED`` or ``EXHAUSTED`` in the
session info is a ``limited`` stop until the cycle end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from campaigns.domain import StopKind
from campaigns.gateways.base import SessionHealth

CAPPING_WAIT_S = 24 * 3600.0
"""How long a campaign stopped by WAHA 475 (capping) waits when the answer gives neither a cycle
end nor ``Retry-After``: the rolling day the caps of design.md are counted over."""

MAX_CAPPING_WAIT_S = 7 * 24 * 3600.0
"""A cycle end further away than this is read as a mistake and capped (the stop can always be
resumed earlier by an operator)."""

_CAPPED_STATUSES = frozenset({"CAPPED", "EXHAUSTED"})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if number != number or number <= 0:  # NaN, zero or negative: no end
        return None
    return number / 1000.0 if number > 1e11 else number


def _iso(value: Any) -> float | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _first(sources: list[Mapping[str, Any]], *names: str) -> Any:
    for source in sources:
        for name in names:
            if source.get(name) is not None:
                return source[name]
    return None


def _sources(body: Any) -> list[Mapping[str, Any]]:
    """Where capping fields may sit in an answer: the exception, the body, its ``capping``."""
    if not isinstance(body, Mapping):
        return []
    found: list[Mapping[str, Any]] = []
    for name in ("exception", "capping"):
        if isinstance(body.get(name), Mapping):
            found.append(body[name])
    return [*found, body]


def cycle_end(body: Any) -> float | None:
    """The capping cycle's end in an answer (epoch seconds), or None."""
    sources = _sources(body)
    end = _number(_first(sources, "cycleEndTimestamp", "cycle_end_timestamp"))
    return end if end is not None else _iso(_first(sources, "cycleEnd", "cycle_end"))


def capping_status(body: Any) -> str | None:
    """The capping status word of an answer (``CAPPED``...), or None."""
    value = _first(_sources(body), "cappingStatus", "capping_status")
    if value is None and isinstance(body, Mapping) and isinstance(body.get("capping"), Mapping):
        value = body["capping"].get("status")
    return value if isinstance(value, str) and value else None


def capping_wait(body: Any, retry_after: float | None, now: float | None = None) -> float:
    """Seconds until a 475 capping ends: the cycle end in the body, else ``Retry-After``, else
    :data:`CAPPING_WAIT_S`; never negative, at most :data:`MAX_CAPPING_WAIT_S`."""
    end = cycle_end(body)
    if end is not None:
        wait = end - (time.time() if now is None else now)
    else:
        wait = retry_after if retry_after else CAPPING_WAIT_S
    return min(max(wait, 0.0), MAX_CAPPING_WAIT_S)


def clock(epoch: float) -> str:
    """``HH:MM UTC`` of an epoch time, with the date when it is not today (UTC)."""
    when = datetime.fromtimestamp(epoch, UTC)
    if when.date() == datetime.now(UTC).date():
        return when.strftime("%H:%M UTC")
    return when.strftime("%Y-%m-%d %H:%M UTC")


def capping_reason(body: Any, wait: float, text: str) -> str:
    """The stored reason of a 475 stop."""
    until = clock(time.time() + wait)
    status = capping_status(body) or "unknown"
    return f"WhatsApp capped the number until {until} (error 475, cappingStatus={status}): {text}"


def _timelock(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    me = body.get("me")
    candidates = [me.get("reachoutTimelock")] if isinstance(me, Mapping) else []
    candidates += [body.get("reachoutTimelock"), body.get("timelock")]
    for lock in candidates:
        if isinstance(lock, Mapping) and True in (lock.get("isActive"), lock.get("active")):
            return lock
    return None


def session_health(status: str, body: Mapping[str, Any], now: float | None = None) -> SessionHealth:
    """The health of a session info answer (``GET /api/sessions/{session}``): connected while
    WORKING, with the timelock (``blocked``) or the capping (``limited`` until the cycle end)
    it reports."""
    if status != "WORKING":
        return SessionHealth(False, status)
    lock = _timelock(body)
    if lock is not None:
        ends = _number(lock.get("timeEnforcementEnds"))
        told = f" (WhatsApp says it ends {clock(ends)})" if ends is not None else ""
        return SessionHealth(
            True,
            status,
            "WhatsApp reach-out timelock (error 463) on the number"
            + told
            + "; do not restart the session, an operator resumes once it is lifted",
            stop=StopKind.BLOCKED,
            until=ends,
        )
    word, end = capping_status(body), cycle_end(body)
    current = time.time() if now is None else now
    if word is not None and word.upper() in _CAPPED_STATUSES and (end is None or end > current):
        until = f" until {clock(end)}" if end is not None else ""
        return SessionHealth(
            True,
            status,
            f"WhatsApp capped the number{until} (error 475, cappingStatus={word})",
            stop=StopKind.LIMITED,
            until=end,
        )
    return SessionHealth(True, status)
