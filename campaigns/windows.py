"""Send windows: when a session or a campaign may send (design.md, "Sender protection").

A window is a time zone, week days and periods a day (08:00–12:00 and 14:00–20:00
America/Sao_Paulo, Mon–Sat). A lane sends only while its session's and its campaign's windows
are both open, and waits otherwise. Pure, stdlib only, on real instants: each local day's
period bounds are built in the window's zone and converted to UTC, so DST needs no special case:

- a period ending at or before its start crosses midnight and belongs to the day it starts on
  (Saturday 22:00–02:00 runs to Sunday 02:00 even if Sunday is not a day); 00:00-24:00 is all day;
- a local time skipped in spring is the instant the clock jumps (02:30 opens at 03:00);
- a local time repeated in autumn is its first occurrence (00:00–03:00 lasts four hours);
- overlapping periods are allowed: their union is open (merged, not refused).

Searches stop at :data:`HORIZON`, so no combination can spin: a window always open reports
``open_until`` at the horizon, and windows never open together raise InvalidArgument.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.errors import InvalidArgument

WINDOW_OPTIONS: tuple[str, ...] = ("window_tz", "window_days", "window_hours")
"""The session options of a window (every gateway kind takes them)."""

HORIZON = timedelta(days=400)
"""How far ahead any search looks: past a year, every weekly window has opened."""

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_WORDS = {w: i % 7 for i, w in enumerate([*(n.lower() for n in DAY_NAMES), *_FULL_NAMES])}
_DAY_WORDS.update({str(i + 1): i for i in range(7)})  # ISO 8601: 1 = Monday
_PERIOD = re.compile(r"^(\d{2}):(\d{2})\s*[-–]\s*(\d{2}):(\d{2})$")
_MIDNIGHT = time(0)


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """Local ``start`` to ``end`` of one day; ``end <= start`` runs into the next day and
    ``00:00``–``00:00`` is the whole day (written ``00:00-24:00``)."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end and self.start != _MIDNIGHT:
            # 08:00-08:00 could mean nothing or 24 hours: refuse rather than guess
            raise InvalidArgument(f"period {self.text()} starts and ends at the same time")

    def text(self, dash: str = "-") -> str:
        end = "24:00" if self.end == _MIDNIGHT else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}{dash}{end}"


@dataclass(frozen=True, slots=True)
class SendWindow:
    """A time zone (IANA name), week days (0=Monday … 6=Sunday) and periods a day."""

    tz: str
    days: frozenset[int]
    periods: tuple[Period, ...]

    def __post_init__(self) -> None:
        _zone(self.tz, "tz")
        if not self.days or not self.days <= frozenset(range(7)):
            raise InvalidArgument(f"window days must be 0..6 (Monday..Sunday), got {self.days}")
        if not self.periods:
            raise InvalidArgument("a send window needs at least one period")
        # sorted once: the interval stream relies on starts in order within a day
        object.__setattr__(self, "periods", tuple(sorted(set(self.periods))))

    def is_open(self, at: datetime) -> bool:
        """Whether ``at`` (aware) is inside a period."""
        return any(a <= _utc(at) < b for a, b in self._raw(_utc(at) - timedelta(days=2), _utc(at)))

    def next_open(self, at: datetime) -> datetime:
        """``at`` itself when open, else the next opening (UTC)."""
        return next_open_all((self,), at)

    def open_until(self, at: datetime) -> datetime:
        """The end of the open stretch holding ``at`` (``at`` itself when closed), across
        touching periods and days; at most :data:`HORIZON` ahead."""
        end = at = _utc(at)  # closed: the stretch is empty
        for a, b in self._raw(at - timedelta(days=2), at + HORIZON):
            if a > end:
                break
            end = max(end, b)
        return min(end, at + HORIZON)

    def open_seconds(self, start: datetime, end: datetime) -> float:
        """Open time within ``[start, end]``, in seconds."""
        return open_seconds_all((self,), start, end)

    def finish_after(self, start: datetime, work_seconds: float) -> datetime:
        """When ``work_seconds`` of open time have elapsed from ``start`` (for an ETA)."""
        return finish_after_all((self,), start, work_seconds)

    def _raw(self, since: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Each period as a UTC interval, ordered by start, for the local days that can
        touch ``[since, until]`` (a day earlier: its period may cross midnight)."""
        zone = ZoneInfo(self.tz)
        day = since.astimezone(zone).date() - timedelta(days=1)
        last = until.astimezone(zone).date()
        while day <= last:
            if day.weekday() in self.days:
                for period in self.periods:
                    end_day = day if period.end > period.start else day + timedelta(days=1)
                    a = _local_to_utc(datetime.combine(day, period.start), zone)
                    b = _local_to_utc(datetime.combine(end_day, period.end), zone)
                    if b > a and b > since:  # empty when all of it was skipped by DST
                        yield a, b
            day += timedelta(days=1)

    def to_json(self) -> dict[str, Any]:
        return {
            "tz": self.tz,
            "days": sorted(self.days),
            "periods": [[p.start.strftime("%H:%M"), p.text().split("-")[1]] for p in self.periods],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SendWindow:
        """The window :meth:`to_json` wrote; :class:`InvalidArgument` for anything else."""
        try:
            periods = ",".join(f"{a}-{b}" for a, b in data["periods"])
            days = frozenset(int(d) for d in data["days"])
            return cls(str(data["tz"]), days, parse_periods(periods, "send_window"))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"send_window is not a window: {data!r} ({exc})") from None

    def describe(self) -> str:
        """``08:00–12:00, 14:00–20:00 Mon–Sat America/Sao_Paulo``."""
        hours = ", ".join(p.text("–") for p in self.periods)
        return f"{hours} {describe_days(self.days)} {self.tz}"


def describe_days(days: frozenset[int]) -> str:
    """``every day``, ``Mon–Sat``, ``Mon, Wed, Fri``, ``Sat–Mon`` (runs of three or more)."""
    if len(days) == 7:  # the search for a run's first day below needs a missing day
        return "every day"
    first = next(d for d in range(7) if d in days and (d - 1) % 7 not in days)
    runs: list[list[int]] = []
    for day in sorted(days, key=lambda d: (d - first) % 7):
        if runs and (runs[-1][-1] + 1) % 7 == day:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(
        f"{DAY_NAMES[r[0]]}–{DAY_NAMES[r[-1]]}"
        if len(r) > 2
        else ", ".join(DAY_NAMES[d] for d in r)
        for r in runs
    )


def _zone(name: str, option: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidArgument(
            f'{option}: unknown time zone "{name}" (an IANA name such as America/Sao_Paulo)'
        ) from None


def parse_periods(text: str, option: str = "window_hours") -> tuple[Period, ...]:
    """``08:00-12:00,14:00-20:00`` → periods; ``24:00`` is allowed as an end only."""
    parts = [part.strip() for part in str(text).split(",")]
    if not any(parts):
        raise InvalidArgument(f"{option}: no period given (e.g. 08:00-12:00,14:00-20:00)")
    periods = []
    for part in parts:
        match = _PERIOD.match(part)
        if match is None:
            raise InvalidArgument(f'{option}: "{part}" is not HH:MM-HH:MM')
        sh, sm, eh, em = (int(g) for g in match.groups())
        if sh > 23 or sm > 59 or em > 59 or eh > 24 or (eh == 24 and em):
            raise InvalidArgument(f'{option}: "{part}" is not a time of day (00:00 to 24:00)')
        try:
            periods.append(Period(time(sh, sm), time(eh % 24, em)))
        except InvalidArgument as exc:
            raise InvalidArgument(f'{option}: "{part}": {exc}') from None
    return tuple(periods)


def parse_days(text: str | None, option: str = "window_days") -> frozenset[int]:
    """``mon-sat``, ``mon,wed,fri``, ``1-6`` (ISO: 1 = Monday), ``all`` or None (every day);
    a range may wrap (``sat-mon``)."""
    if text is None or str(text).strip().lower() in ("", "all"):
        return frozenset(range(7))
    days: set[int] = set()
    for token in str(text).split(","):
        first, dash, last = token.partition("-")
        if not first.strip():
            raise InvalidArgument(f'{option}: "{text}" has an empty day')
        start, stop = _day(first, option), _day(last if dash else first, option)
        days.update((start + i) % 7 for i in range((stop - start) % 7 + 1))
    return frozenset(days)


def _day(token: str, option: str) -> int:
    if token.strip().lower() not in _DAY_WORDS:
        raise InvalidArgument(f'{option}: "{token.strip()}" is not a week day (mon..sun or 1..7)')
    return _DAY_WORDS[token.strip().lower()]


def parse_window(
    hours: str,
    days: str | None = None,
    tz: str | None = None,
    *,
    names: Sequence[str] = WINDOW_OPTIONS,
) -> SendWindow:
    """A window from its strings; errors name the part with ``names`` (tz, days, hours), e.g.
    ``window_tz`` for a session option, ``--window-tz`` on the command line."""
    tz_name, days_name, hours_name = names
    zone = (tz or "UTC").strip()
    _zone(zone, tz_name)
    return SendWindow(zone, parse_days(days, days_name), parse_periods(hours, hours_name))


def window_from_options(options: Mapping[str, str]) -> SendWindow | None:
    """A session's window from its options; None without ``window_hours``. ``window_tz`` or
    ``window_days`` alone is an error: the operator meant a window and would get none."""
    if (hours := options.get("window_hours")) is None:
        for name in (n for n in WINDOW_OPTIONS[:2] if n in options):
            raise InvalidArgument(f"{name} needs window_hours (e.g. 08:00-20:00)")
        return None
    return parse_window(hours, options.get("window_days"), options.get("window_tz"))


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"send windows need an aware datetime, got naive {at.isoformat()}")
    return at.astimezone(UTC)


def _local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """A naive local time as an instant: the first occurrence of a repeated time; for a time
    the clock skipped, the instant of the jump (found by bisection: zoneinfo does not expose
    its transitions)."""
    after = local.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the offset before a gap
    if after.astimezone(zone).replace(tzinfo=None) == local:
        return after
    before = local.replace(tzinfo=zone, fold=1).astimezone(UTC)  # earlier than the jump
    lo, hi = int(before.timestamp()), int(after.timestamp())
    offset = after.astimezone(zone).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if datetime.fromtimestamp(mid, zone).utcoffset() == offset else (mid, hi)
    return datetime.fromtimestamp(hi, UTC)


def all_open(windows: Sequence[SendWindow], at: datetime) -> bool:
    """Whether every window is open at ``at`` (no window: always open)."""
    return all(w.is_open(at) for w in windows)


def _next_open_all(windows: Sequence[SendWindow], at: datetime, limit: datetime) -> datetime | None:
    """The first instant from ``at`` when all are open, None if not before ``limit``: each
    window in turn moves the candidate to its next opening until none moves it."""
    moved = True
    while moved:
        moved = False
        for window in windows:
            ahead = window._raw(at - timedelta(days=2), at + timedelta(days=16))
            nxt = next((max(a, at) for a, b in ahead if b > at), None)
            if nxt is None or nxt >= limit:
                return None
            if nxt != at:
                at, moved = nxt, True
    return at


def next_open_all(windows: Sequence[SendWindow], at: datetime) -> datetime:
    """``at`` when all windows are open, else the next instant they all are (UTC).
    :class:`InvalidArgument` if they never are within :data:`HORIZON` (disjoint periods)."""
    if (found := _next_open_all(windows, _utc(at), _utc(at) + HORIZON)) is None:
        shown = "; ".join(w.describe() for w in windows)
        raise InvalidArgument(f"the send windows are never open (together): {shown}")
    return found


def _open_until_all(windows: Sequence[SendWindow], at: datetime) -> datetime:  # intersection
    return min((w.open_until(at) for w in windows), default=at + HORIZON)


def wait_seconds(windows: Sequence[SendWindow], now: datetime) -> float:
    """Seconds until all windows are open (0.0 when they are now, or when there is none)."""
    return max((next_open_all(windows, now) - _utc(now)).total_seconds(), 0.0)


def open_seconds_all(windows: Sequence[SendWindow], start: datetime, end: datetime) -> float:
    """Seconds within ``[start, end]`` when all windows are open together."""
    at, stop, total = _utc(start), _utc(end), 0.0
    while at < stop:
        if (opened := _next_open_all(windows, at, stop)) is None:
            break
        closes = min(_open_until_all(windows, opened), stop)
        total += (closes - opened).total_seconds()
        at = max(closes, opened + timedelta(microseconds=1))
    return total


def finish_after_all(
    windows: Sequence[SendWindow], start: datetime, work_seconds: float
) -> datetime:
    """When ``work_seconds`` of time with all windows open have elapsed from ``start``."""
    return finish_after_any((tuple(windows),), start, work_seconds)


def finish_after_any(
    groups: Sequence[Sequence[SendWindow]], start: datetime, work_seconds: float
) -> datetime:
    """Like :func:`finish_after_all` for a pool: work goes on while *any* group (one lane's
    windows: its session's and its campaign's) is all open. An empty group is always open;
    groups that never open are ignored; :class:`InvalidArgument` if none ever opens."""
    if not math.isfinite(work_seconds):
        raise ValueError(f"work_seconds must be finite, got {work_seconds}")
    at, left = _utc(start), timedelta(seconds=max(work_seconds, 0.0))
    if any(not group for group in groups) or not groups:
        return at + left
    while left > timedelta(0):
        found = [o for g in groups if (o := _next_open_all(g, at, at + HORIZON)) is not None]
        if not found:
            raise InvalidArgument("the send windows never open within a year")
        at = min(found)
        if (closes := _union_until(groups, at)) - at >= left:
            return at + left
        left -= closes - at
        at = max(closes, at + timedelta(microseconds=1))  # never stand still
    return at


def _union_until(groups: Sequence[Sequence[SendWindow]], at: datetime) -> datetime:
    """The end of the stretch from ``at`` during which some group is open: a lane closing
    while another is open does not end it."""
    end, limit = at, at + HORIZON
    while end < limit:
        later = max((_open_until_all(g, end) for g in groups if all_open(g, end)), default=end)
        if later <= end:
            break
        end = later
    return min(end, limit)
