"""Session states and injected faults of the sandbox gateway.

A *session* is a bare name shared by the three dialects: the WAHA session, the Evolution instance
and the Cloud API phone_number_id. Every name exists and is connected unless it was dropped (or
the operator restricted the set of known names).

Faults are *rules*: each one is scoped to a session name or global (``session=None``), and lives
until a deadline (``seconds``), for a number of requests (``count``), or until reset. All state
sits behind one lock, and one request takes that lock once per decision, so the request path stays
cheap even with thousands of requests per second.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from campaigns.sandbox.restrictions import Restrictions

WAHA_DROP_STATUSES = frozenset({"STOPPED", "STARTING", "SCAN_QR_CODE", "FAILED"})
EVOLUTION_DROP_STATES = frozenset({"close", "connecting"})


@dataclass(slots=True)
class Rule:
    """One injected fault. ``params`` holds the kind-specific settings (code, share, delay...)."""

    kind: str
    session: str | None
    params: dict[str, Any]
    until: float | None = None
    """``time.monotonic()`` deadline; None = no deadline."""
    remaining: int | None = None
    """How many more requests it applies to; None = unlimited."""

    def alive(self, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return self.remaining is None or self.remaining > 0

    def matches(self, session: str) -> bool:
        return self.session is None or self.session == session

    def consume(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1

    def describe(self, now: float) -> dict[str, Any]:
        left = None if self.until is None else max(0.0, round(self.until - now, 3))
        params = {
            key: sorted(value) if isinstance(value, frozenset) else value
            for key, value in self.params.items()
        }
        return {
            "kind": self.kind,
            "session": self.session,
            "seconds_left": left,
            "remaining": self.remaining,
            **params,
        }


@dataclass(slots=True)
class Drop:
    """A dropped session: what WAHA and Evolution report for it, and until when."""

    waha_status: str
    evolution_state: str
    until: float | None
    token: int


@dataclass(frozen=True, slots=True)
class Decision:
    """What the faults say about one send request, computed under one lock hold."""

    throttle: dict[str, Any] | None = None
    refuse: dict[str, Any] | None = None
    """The gateway's own error for this send (``code``): a session-level refusal, or one
    recipient's when the rule names numbers."""
    fail: dict[str, Any] | None = None
    rejected: bool = False
    hang: float = 0.0


@dataclass(slots=True)
class _History:
    statuses: list[tuple[str, int]] = field(default_factory=list)


StatusListener = Callable[[str, "Drop | None"], None]
"""Called (outside the lock) with the session name and its new drop, or None on restore."""


class FaultState:
    """Thread-safe registry of dropped sessions and fault rules, with seeded randomness."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        # Notified on every restore so WAHA's "wait until WORKING" poll wakes at once.
        self._changed = threading.Condition(self._lock)
        self._random = random.Random(seed)
        self._seed = seed
        self._drops: dict[str, Drop] = {}
        self._rules: list[Rule] = []
        self._known: frozenset[str] | None = None
        self._history: dict[str, _History] = {}
        self._tokens = 0
        self._timers: list[threading.Timer] = []
        self._listeners: list[StatusListener] = []
        # WhatsApp's capping and timelock on WAHA sessions: connected, yet refused
        self.restrictions = Restrictions()

    # -- listeners -------------------------------------------------------------------------
    def add_listener(self, listener: StatusListener) -> None:
        """Call ``listener`` after each drop/restore (used for webhooks)."""
        self._listeners.append(listener)

    def _notify(self, session: str, drop: Drop | None) -> None:
        for listener in self._listeners:
            listener(session, drop)

    # -- sessions --------------------------------------------------------------------------
    def set_known(self, names: Iterable[str] | None) -> None:
        """Restrict the existing session names (None = every name exists)."""
        with self._lock:
            self._known = None if names is None else frozenset(names)

    def exists(self, session: str) -> bool:
        known = self._known
        return known is None or session in known

    def drop(
        self,
        session: str,
        *,
        seconds: float | None = None,
        waha_status: str = "STOPPED",
        evolution_state: str = "close",
    ) -> Drop:
        """Disconnect ``session``; with ``seconds``, restore it automatically afterwards."""
        if waha_status not in WAHA_DROP_STATUSES:
            raise ValueError(f"waha_status must be one of {sorted(WAHA_DROP_STATUSES)}")
        if evolution_state not in EVOLUTION_DROP_STATES:
            raise ValueError(f"evolution_state must be one of {sorted(EVOLUTION_DROP_STATES)}")
        with self._lock:
            self._tokens += 1
            until = None if seconds is None else time.monotonic() + seconds
            drop = Drop(waha_status, evolution_state, until, self._tokens)
            self._drops[session] = drop
            self._remember(session, waha_status)
            if seconds is not None:
                # A timer (not only a lazy deadline check) so the restore webhook is sent even
                # when nobody sends to the session meanwhile.
                timer = threading.Timer(seconds, self._auto_restore, (session, drop.token))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
        self._notify(session, drop)
        return drop

    def _auto_restore(self, session: str, token: int) -> None:
        with self._lock:
            current = self._drops.get(session)
            if current is None or current.token != token:
                return  # restored or dropped again meanwhile: that newer state wins
        self.restore(session)

    def restore(self, session: str | None = None) -> list[str]:
        """Reconnect ``session`` (None = every dropped session); returns the names restored."""
        with self._lock:
            names = list(self._drops) if session is None else [session]
            restored = [name for name in names if self._drops.pop(name, None) is not None]
            for name in restored:
                self._remember(name, "WORKING")
            self._changed.notify_all()
        for name in restored:
            self._notify(name, None)
        return restored

    def _remember(self, session: str, status: str) -> None:
        history = self._history.setdefault(session, _History())
        history.statuses.append((status, int(time.time() * 1000)))
        del history.statuses[:-3]  # WAHA's session.status carries the last 3 statuses

    def statuses(self, session: str) -> list[dict[str, Any]]:
        """The last three WAHA statuses of ``session``, oldest first."""
        with self._lock:
            history = self._history.get(session, _History())
            return [{"status": s, "timestamp": t} for s, t in history.statuses]

    def dropped(self, session: str) -> Drop | None:
        """The active drop of ``session``, or None when it is connected."""
        drop = self._drops.get(session)
        if drop is not None and drop.until is not None and time.monotonic() >= drop.until:
            return None  # the timer is about to restore it; answer as connected already
        return drop

    def wait_connected(self, session: str, timeout: float) -> Drop | None:
        """Block up to ``timeout`` s until ``session`` is connected (WAHA's waitUntilStatus);
        returns the drop still in force, or None."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                drop = self.dropped(session)
                left = deadline - time.monotonic()
                if drop is None or left <= 0:
                    return drop
                if drop.until is not None:
                    left = min(left, max(0.0, drop.until - time.monotonic()))
                self._changed.wait(left)

    # -- rules -----------------------------------------------------------------------------
    def add_rule(
        self,
        kind: str,
        session: str | None,
        params: dict[str, Any],
        seconds: float | None = None,
        count: int | None = None,
    ) -> Rule:
        """Add a fault rule; a new rule of the same kind and scope replaces the old one. The
        scope of a refusal aimed at numbers includes them: refusing 131049 for one recipient
        and 130497 for another are two rules, as they are two people's answers."""
        until = None if seconds is None else time.monotonic() + seconds
        rule = Rule(kind, session, params, until, count)

        def same_scope(r: Rule) -> bool:
            if r.kind != kind or r.session != session or kind == "reject":
                return False
            return kind != "refuse" or r.params.get("numbers") == params.get("numbers")

        with self._lock:
            self._rules = [r for r in self._rules if not same_scope(r)]
            self._rules.append(rule)
        return rule

    def _first(self, kind: str, session: str, now: float) -> Rule | None:
        # Session-scoped rules win over global ones: the operator aimed them more precisely.
        best: Rule | None = None
        for rule in self._rules:
            if rule.kind == kind and rule.matches(session) and rule.alive(now):
                if rule.session is not None:
                    return rule
                best = best or rule
        return best

    def delay(self, session: str) -> float:
        """Seconds to hold any answer for ``session`` (the *slow* fault)."""
        with self._lock:
            rule = self._first("slow", session, time.monotonic())
            if rule is None:
                return 0.0
            rule.consume()
            return float(rule.params["delay"])

    def is_rejected(self, session: str, digits: str) -> bool:
        """Whether ``digits`` was declared "not on WhatsApp" for ``session``."""
        now = time.monotonic()
        with self._lock:
            return any(
                r.kind == "reject"
                and r.matches(session)
                and r.alive(now)
                and digits in r.params["numbers"]
                for r in self._rules
            )

    def decide(self, session: str, digits: str) -> Decision:
        """Throttle, refusal, failure, rejection and hang for one send, consuming counted rules."""
        now = time.monotonic()
        with self._lock:
            throttle = self._first("throttle", session, now)
            if throttle is not None:
                throttle.consume()
                return Decision(throttle=throttle.params)
            refuse = self._refusal(session, digits, now)
            if refuse is not None:
                refuse.consume()
                return Decision(refuse=refuse.params)
            fail = self._first("fail", session, now)
            if fail is not None and self._random.random() < float(fail.params["share"]):
                fail.consume()
                return Decision(fail=fail.params)
            rejected = any(
                r.kind == "reject"
                and r.matches(session)
                and r.alive(now)
                and digits in r.params["numbers"]
                for r in self._rules
            )
            hang = self._first("hang", session, now)
            hold = 0.0
            if hang is not None and not rejected:
                hang.consume()
                hold = float(hang.params["hold"])
            return Decision(rejected=rejected, hang=hold)

    def _refusal(self, session: str, digits: str, now: float) -> Rule | None:
        # Like _first, but a rule naming numbers refuses only those (130497 is about one
        # recipient's country, not the session). Called under the lock.
        best: Rule | None = None
        for rule in self._rules:
            if rule.kind != "refuse" or not rule.matches(session) or not rule.alive(now):
                continue
            numbers = rule.params["numbers"]
            if numbers and digits not in numbers:
                continue
            if rule.session is not None:
                return rule
            best = best or rule
        return best

    # -- housekeeping ----------------------------------------------------------------------
    def reset(self) -> list[str]:
        """Forget every rule, capping, timelock and known-names restriction; restore every
        session."""
        with self._lock:
            self._rules.clear()
            self._known = None
            self._random = random.Random(self._seed)
            self._cancel_timers()
        self.restrictions.clear()
        return self.restore()

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def close(self) -> None:
        """Cancel pending auto-restores (server shutdown)."""
        with self._lock:
            self._cancel_timers()

    def snapshot(self) -> dict[str, Any]:
        """The current state as JSON-ready data (for ``GET /_sandbox/state``)."""
        now = time.monotonic()
        with self._lock:
            drops = {
                name: {
                    "waha_status": d.waha_status,
                    "evolution_state": d.evolution_state,
                    "seconds_left": None if d.until is None else round(d.until - now, 3),
                }
                for name, d in self._drops.items()
            }
            rules = [r.describe(now) for r in self._rules if r.alive(now)]
            known = None if self._known is None else sorted(self._known)
        return {"dropped": drops, "rules": rules, "known_sessions": known, "seed": self._seed,
                **self.restrictions.snapshot()}
