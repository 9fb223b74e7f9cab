"""An honest ETA for a campaign whose lanes are capped: simulate its lanes minute by minute.

The plain ETA (messages × mean gap + batch delays) is right for one uncapped lane. A pool with
caps per day and hour, a warm-up, Meta's portfolio limit and send windows is not a formula: a
lane sends at its pace while its windows are open and its caps leave room, the pool pauses
between batches, and a cap frees room only as the rolling day moves on. So the lanes are played
forward in steps of one (virtual) minute until nothing is left, with each lane's sends of the
last day and hour as its starting point (counted from the ledger; assumed to have happened
just now, which errs late). Pure: the store gathers the inputs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from campaigns.caps import Caps
from campaigns.errors import InvalidArgument
from campaigns.timescale import REAL_DAY_S, scale, virtual_now
from campaigns.windows import SendWindow, all_open, next_open_all

STEP_S = 60.0
"""The simulation's step, in virtual seconds."""
HORIZON_DAYS = 400
"""How far the simulation looks (virtual days); a campaign longer than that gets the plain
estimate rather than a loop without end."""


@dataclass(frozen=True, slots=True)
class LanePlan:
    """What the ETA needs to know of one lane."""

    session: str
    rate: float
    """Messages per real second while the lane may send (its pace)."""
    caps: Caps = field(default_factory=Caps)
    windows: tuple[SendWindow, ...] = ()
    day: int | None = None
    """The session's warm-up day now (1 = the day of its first send)."""
    sent_day: int = 0
    sent_hour: int = 0
    portfolio_share: float = 1.0
    """This lane's share of its portfolio's daily limit (the portfolio's lanes in the pool)."""


def finish_seconds(
    remaining: int,
    lanes: Sequence[LanePlan],
    *,
    batch_size: int,
    batch_delay: float,
    day_seconds: float = REAL_DAY_S,
    now: datetime | None = None,
) -> float | None:
    """Real seconds until ``remaining`` messages are sent over ``lanes``; None when the
    lanes never finish within HORIZON_DAYS (or have no pace at all)."""
    if remaining <= 0:
        return 0.0
    live = [lane for lane in lanes if lane.rate > 0]
    if not live:
        return None
    factor = scale(day_seconds)
    start = virtual_now(day_seconds, now)
    step_real = STEP_S / factor
    day_steps = int(REAL_DAY_S / STEP_S)
    tracks = [_Track(lane, day_steps) for lane in live]
    left = float(remaining)
    in_batch = 0.0
    pause = 0.0  # virtual seconds of batch delay still to wait
    for index in range(HORIZON_DAYS * day_steps):
        moment = start + timedelta(seconds=index * STEP_S)
        usable = max(0.0, 1.0 - pause / STEP_S)
        pause = max(0.0, pause - STEP_S)
        for track in tracks:
            sent = track.step(moment, index, step_real * usable, left)
            left -= sent
            in_batch += sent
        if left <= 0:
            return (index + 1) * step_real
        if batch_size > 0 and in_batch >= batch_size:
            in_batch -= batch_size
            pause += batch_delay * factor
    return None


class _Track:
    """One lane played forward: its sends per step over the last day and hour (running sums,
    so a step costs the same whatever the caps), and whether its windows are open."""

    def __init__(self, lane: LanePlan, day_steps: int) -> None:
        self.lane = lane
        self.day_steps = day_steps
        self.hour_steps = max(day_steps // 24, 1)
        self.day: deque[int] = deque([lane.sent_day])
        self.hour: deque[int] = deque([lane.sent_hour])
        self.day_sum = lane.sent_day
        self.hour_sum = lane.sent_hour
        self.credit = 0.0  # fractional messages carried to the next step
        self.open = True
        self.until: datetime | None = None  # when ``open`` may change (None: never)

    def step(self, moment: datetime, index: int, seconds: float, left: float) -> int:
        sent = 0
        if self._is_open(moment):
            self.credit += self.lane.rate * seconds
            sent = int(min(self.credit, self._room(index), left))
            self.credit = min(self.credit - sent, max(self.lane.rate * seconds, 1.0))
        else:
            self.credit = 0.0
        self._push(sent)
        return sent

    def _push(self, sent: int) -> None:
        self.day.append(sent)
        self.day_sum += sent
        if len(self.day) >= self.day_steps:  # a send a day old has left the rolling day
            self.day_sum -= self.day.popleft()
        self.hour.append(sent)
        self.hour_sum += sent
        if len(self.hour) >= self.hour_steps:
            self.hour_sum -= self.hour.popleft()

    def _is_open(self, moment: datetime) -> bool:
        windows = self.lane.windows
        if not windows:
            return True
        if self.until is not None and moment < self.until:
            return self.open
        self.open = all_open(windows, moment)
        try:
            self.until = (
                min(w.open_until(moment) for w in windows)
                if self.open
                else next_open_all(windows, moment)
            )
        except InvalidArgument:
            self.until = None  # never open together: stays closed
        return self.open

    def _room(self, index: int) -> float:
        """How many more messages the lane's caps allow in this step."""
        lane, caps = self.lane, self.lane.caps
        room = float("inf")
        if caps.warmup or caps.per_day is not None:
            day = None if lane.day is None else lane.day + index // self.day_steps
            cap = caps.day_cap(day)
            if cap is not None:
                room = min(room, cap - self.day_sum)
        if caps.per_hour is not None:
            room = min(room, caps.per_hour - self.hour_sum)
        if caps.tier is not None:
            room = min(room, caps.tier * lane.portfolio_share - self.day_sum)
        return max(room, 0.0)
