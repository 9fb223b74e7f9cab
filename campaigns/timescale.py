"""Days made fast, for rehearsals: with ``CAPACITY_DAY_SECONDS`` shorter than a day, every
wall-clock notion of sender protection runs on a virtual clock that many times faster — caps
per rolling day and hour, warm-up days, send windows (a 08:00–20:00 window opens half of each
virtual day) and Meta's "retry after 24 h" — so a week of a campaign can be watched in
minutes. With the default (86,400 s) the virtual clock is the real one.

The virtual clock counts from a fixed anchor, so every worker and the command line agree on
what virtual time it is; it wraps every 520 weeks (whole weeks, so week days hold), which keeps
it within dates Python can hold at any speed-up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

REAL_DAY_S = 86_400.0
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)
WRAP = timedelta(weeks=520)


def scale(day_seconds: float) -> float:
    """How many times faster than real time the virtual clock runs."""
    return REAL_DAY_S / day_seconds if day_seconds > 0 else 1.0


def virtual_now(day_seconds: float, now: datetime | None = None) -> datetime:
    """The moment the virtual clock shows at real moment ``now`` (default: now)."""
    real = now or datetime.now(UTC)
    factor = scale(day_seconds)
    if factor == 1.0:
        return real
    elapsed = ((real - ANCHOR).total_seconds() * factor) % WRAP.total_seconds()
    return ANCHOR + timedelta(seconds=elapsed)
