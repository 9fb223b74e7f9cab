"""WhatsApp's own limits on a number, as the sandbox plays them for WAHA sessions.

- **Capping** (error 475): WhatsApp caps the messages of a number until the end of a cycle.
  Control verb ``cap {session, seconds}``: the cycle ends ``seconds`` from now (epoch seconds,
  rounded up to a whole second like WhatsApp's unix timestamps); until then every WAHA sendText
  of the session is refused; afterwards sends go through again by themselves.
- **Reach-out timelock** (error 463): control verb ``timelock {session, seconds?}``: sends are
  refused until ``restore``/``reset`` lifts it, or, with ``seconds``, until it ends by itself
  (WAHA's docs: "the restriction lifts automatically"; ``timeEnforcementEnds`` is then told).

The session stays connected (WORKING) through both: WhatsApp keeps the connection. How the
answers look is in :mod:`campaigns.sandbox.waha`. State is per session name, behind one lock;
a lapsed entry is forgotten lazily on the next read.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Capping:
    """A session's capping: until when (epoch seconds)."""

    cycle_end: float
    status: str = "CAPPED"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "cycleEndTimestamp": int(self.cycle_end),
            "cycleEnd": iso(self.cycle_end),
        }


@dataclass(frozen=True, slots=True)
class Timelock:
    """A session's reach-out timelock; ``ends`` (epoch seconds) None: until lifted."""

    ends: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "isActive": True,
            "timeEnforcementEnds": None if self.ends is None else int(self.ends),
        }


def iso(epoch: float) -> str:
    """``2026-09-01T10:00:00Z``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Restrictions:
    """Thread-safe capping and timelock state of the sandbox's sessions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._caps: dict[str, Capping] = {}
        self._locks: dict[str, Timelock] = {}

    def cap(self, session: str, seconds: float) -> Capping:
        """Cap ``session`` until ``seconds`` from now (a new cap replaces the old one)."""
        if not seconds > 0:
            raise ValueError("seconds must be positive")
        capping = Capping(float(math.ceil(time.time() + seconds)))
        with self._lock:
            self._caps[session] = capping
        return capping

    def timelock(self, session: str, seconds: float | None = None) -> Timelock:
        """Timelock ``session``, until lifted (or for ``seconds``)."""
        if seconds is not None and not seconds > 0:
            raise ValueError("seconds must be positive")
        lock = Timelock(None if seconds is None else float(math.ceil(time.time() + seconds)))
        with self._lock:
            self._locks[session] = lock
        return lock

    def capping(self, session: str) -> Capping | None:
        """The capping in force on ``session``, or None."""
        with self._lock:
            capping = self._caps.get(session)
            if capping is not None and time.time() >= capping.cycle_end:
                del self._caps[session]
                return None
            return capping

    def timelocked(self, session: str) -> Timelock | None:
        """The timelock in force on ``session``, or None."""
        with self._lock:
            lock = self._locks.get(session)
            if lock is not None and lock.ends is not None and time.time() >= lock.ends:
                del self._locks[session]
                return None
            return lock

    def lift(self, session: str | None = None) -> list[str]:
        """End the timelock and capping of ``session`` (None: every session); the names."""
        with self._lock:
            names = sorted(set(self._caps) | set(self._locks)) if session is None else [session]
            lifted = [
                n
                for n in names
                if (self._caps.pop(n, None), self._locks.pop(n, None)) != (None, None)
            ]
        return lifted

    def clear(self) -> None:
        with self._lock:
            self._caps.clear()
            self._locks.clear()

    def snapshot(self) -> dict[str, Any]:
        """``{"capped": {session: {...}}, "timelocked": {session: {...}}}`` of what holds now."""
        with self._lock:
            names = set(self._caps) | set(self._locks)
        capped = {n: c.to_json() for n in sorted(names) if (c := self.capping(n)) is not None}
        locked = {n: t.to_json() for n in sorted(names) if (t := self.timelocked(n)) is not None}
        return {"capped": capped, "timelocked": locked}
