"""Redis key prefixes and TTLs, in one place, each with what it guards.

Units are in the names (``_S``: seconds). The Redis data model itself is written down once, at
the top of the Lua script that uses the keys (``campaigns/pacing.lua``).
"""

from __future__ import annotations

PACING_KEY_PREFIX = "cc:pacing:"
"""Prefix of the per-session pacing hash (``cc:pacing:<session>``). Guards invariant 7: every
worker, process and campaign of a session reads and writes this one key, atomically."""

PACING_STATE_TTL_S = 86_400
"""Idle lifetime of a session's pacing hash. Guards Redis memory against abandoned sessions; it
is far above any send interval, so it never expires between two sends of a live session (and
when it does expire, the pacer treats it as lost state and waits a full interval)."""

PACING_GUARD_S = 0.05
"""Margin added to ``min_interval`` on every grant. Guards the gap between two *HTTP calls*
(not two grants) against jitter between a grant and its request leaving the worker."""

PACING_STOP_POLL_S = 0.5
"""Longest single sleep while waiting for a send turn. Guards a cancelled campaign from waiting
out a whole interval before it notices."""

PACING_LEASE_S = 5.0
"""How long a waiter for a send turn stays in its session's queue without asking again (it asks
at least every half lease). Guards fair turns against crashed waiters: a worker killed while
waiting blocks its session's queue for at most this long."""

PACING_HANDOFF_S = 30.0
"""How long a waiter that stopped waiting (its run's budget spent, a pause) keeps its arrival in
the queue, absent. Guards fairness across task runs: the continuation of a lane that asks again
within this keeps its place (others went meanwhile; nothing was held for it), so short task
budgets do not send every lane to the back of a long queue."""

PACING_NEXT_POLL_S = 0.25
"""Longest sleep of the waiter next in line (position 2) between two asks. Guards the session's
pace when the head leaves early: the turn it gives back is taken within this."""

PACING_MIN_POLL_S = 0.001
"""Shortest sleep between two asks that were not granted. Guards Redis against a busy loop of
waiters on a session without interval (they only wait while another waiter is head)."""

RATE_MARGIN = 0.02
"""A ``rate`` session's slots are spaced this much wider than 1 / rate: sends leave evenly
spaced, so this is the jitter on the wire (about 20 ms at any rate) that can never put rate + 1
sends into one second at the gateway (Meta counts the throughput per second)."""
