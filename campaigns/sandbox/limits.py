"""The gateway's own limits, as the sandbox plays them: per-number throughput and answer latency.

**Throughput** (Cloud API, gateways.md §1.6): Meta lets one business phone number send 80
messages per second by default (20 in coexistence, 1,000 after its upgrade) and answers 130429
"Rate limit hit" past it. The sandbox counts, per phone_number_id, the sends it let through over a
sliding window of one second on their *arrival* times (``Request.received_at``, stamped before
any injected hold or latency), which is what Meta counts: no interval of one second ever holds
more admitted sends than the limit. A refused send is not counted: Meta refuses "until back
within limits", so a client that keeps trying gets through as soon as the window has room
(counting refusals would lock a busy client out for good).

Threads may check arrivals slightly out of order (two requests racing through the handler); the
check looks at every window the new arrival falls in, not only the one ending at it, so the rule
holds whatever the order.

**Latency**: seconds added before each answer, so tests and benchmarks reproduce "a gateway
answering in 250 ms". Set globally, per dialect, per session name, or both; the most precise
setting wins (dialect and session, then session, then dialect, then global).
"""

from __future__ import annotations

import bisect
import math
import threading
from typing import Any

WINDOW = 1.0
"""Seconds of Meta's throughput window."""
DEFAULT_CLOUD_THROUGHPUT = 80
"""Meta's default messages per second per business phone number."""
MAX_THROUGHPUT = 100_000
_HISTORY = 5.0
"""Seconds of admitted arrivals kept behind the latest one: enough for an arrival checked late
(a slow fault holds a request before its check) to be counted against the right windows."""
MAX_LATENCY = 600.0
DIALECTS = ("cloud", "waha", "evolution")


def check_rate(value: Any, name: str = "rate") -> int | None:
    """A per-second limit: a whole number from 1 to :data:`MAX_THROUGHPUT`, or None (no limit).
    Raises ValueError naming ``name``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number of messages per second, or null")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a whole number of messages per second, or null"
        ) from None
    if not math.isfinite(number) or not number.is_integer() or not 1 <= number <= MAX_THROUGHPUT:
        raise ValueError(f"{name} must be a whole number from 1 to {MAX_THROUGHPUT}, or null")
    return int(number)


def check_latency(value: Any, name: str = "seconds") -> float:
    """Latency seconds: finite, from 0 to :data:`MAX_LATENCY`. Raises ValueError naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of seconds") from None
    if isinstance(value, bool) or not math.isfinite(number) or not 0 <= number <= MAX_LATENCY:
        raise ValueError(f"{name} must be finite seconds from 0 to {MAX_LATENCY:g}")
    return number


class Throughput:
    """Sliding-window limits per session name (the Cloud API's phone_number_id)."""

    def __init__(self, default: int | None = DEFAULT_CLOUD_THROUGHPUT) -> None:
        self._initial = check_rate(default, "default throughput")
        self._lock = threading.Lock()
        self._default = self._initial
        self._limits: dict[str, int | None] = {}
        self._admitted: dict[str, list[float]] = {}

    def set(self, rate: int | None, session: str | None = None) -> None:
        """Limit ``session`` (None: every number without its own limit) to ``rate`` sends per
        second; ``rate`` None lifts the limit."""
        checked = check_rate(rate)
        with self._lock:
            if session is None:
                self._default = checked
            else:
                self._limits[session] = checked

    def limit(self, session: str) -> int | None:
        """The limit in force for ``session`` (None: unlimited)."""
        return self._limits.get(session, self._default)

    def admit(self, session: str, arrived: float) -> bool:
        """Whether a send that arrived at ``arrived`` (``time.time()``) fits the limit of
        ``session``; an admitted send is counted, a refused one is not."""
        with self._lock:
            cap = self._limits.get(session, self._default)
            if cap is None:
                return True
            times = self._admitted.setdefault(session, [])
            if times and times[0] < times[-1] - _HISTORY:
                del times[: bisect.bisect_left(times, times[-1] - _HISTORY)]
            if not _fits(times, arrived, cap):
                return False
            bisect.insort(times, arrived)
            return True

    def reset(self) -> None:
        """Back to the limit the sandbox started with, no per-number limit, nothing counted."""
        with self._lock:
            self._default = self._initial
            self._limits.clear()
            self._admitted.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"default": self._default, "sessions": dict(sorted(self._limits.items()))}


def _fits(times: list[float], arrived: float, cap: int) -> bool:
    # The windows (end - 1 s, end] holding the new arrival end in [arrived, arrived + 1 s); the
    # fullest of them ends at the arrival itself or at an admitted arrival after it (only there
    # does a window's count grow), so those are the only ends to check.
    after = bisect.bisect_right(times, arrived)
    ends = [arrived, *times[after : bisect.bisect_left(times, arrived + WINDOW)]]
    for end in ends:
        held = bisect.bisect_right(times, end) - bisect.bisect_right(times, end - WINDOW)
        if held + 1 > cap:
            return False
    return True


class Latency:
    """Seconds to add before each answer, by dialect and/or session name."""

    def __init__(self, default: float = 0.0) -> None:
        self._initial = check_latency(default, "latency")
        self._lock = threading.Lock()
        self._settings: dict[tuple[str | None, str | None], float] = {}
        if self._initial:
            self._settings[(None, None)] = self._initial

    def set(
        self, seconds: float, *, dialect: str | None = None, session: str | None = None
    ) -> None:
        """Add ``seconds`` before the answers of ``dialect`` and/or ``session`` (None: any)."""
        checked = check_latency(seconds)
        if dialect is not None and dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}")
        with self._lock:
            self._settings[(dialect, session)] = checked

    @property
    def active(self) -> bool:
        """Whether any latency is set (callers skip working out the session otherwise)."""
        return bool(self._settings)

    def of(self, dialect: str, session: str | None) -> float:
        """The latency of one answer of ``dialect`` for ``session``."""
        settings = self._settings
        if not settings:
            return 0.0  # the common case, without a lock: an empty dict is read atomically
        with self._lock:
            for key in ((dialect, session), (None, session), (dialect, None), (None, None)):
                if key in settings:
                    return settings[key]
        return 0.0

    def reset(self) -> None:
        """Back to the latency the sandbox started with."""
        with self._lock:
            self._settings.clear()
            if self._initial:
                self._settings[(None, None)] = self._initial

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"dialect": dialect, "session": session, "seconds": seconds}
                for (dialect, session), seconds in self._settings.items()
            ]
