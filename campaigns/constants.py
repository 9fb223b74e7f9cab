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
