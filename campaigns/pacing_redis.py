"""The Redis side of session pacing: the Lua script (``pacing.lua``, whose header documents
every key and operation), its keys, and the rebuild of state that is lost or older than the
truth.

Each call runs the script once. When the script answers ``rebuild`` (no state, state written by
another Redis server process, or an epoch older than this worker saw), the call is repeated
with the session's last send recorded in PostgreSQL as the floor, and the script rebuilds the
state before it answers. The epochs this process saw are kept per pacing scope.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from campaigns.constants import PACING_STATE_TTL_S
from campaigns.errors import CampaignError, StoreUnavailable

log = logging.getLogger("campaigns.pacing")

_SCRIPT = (Path(__file__).parent / "pacing.lua").read_text()
_KEY_SUFFIXES = ("", ":q", ":present", ":forget")
# where each reply carries the epoch of the state it read or wrote
_EPOCH_AT = {"turn": 4, "retake": 3, "rate": 3}


class PacingUnavailable(CampaignError):
    """Redis cannot be used for pacing; nothing may be sent until it can."""


class PacingScript:
    """Runs ``pacing.lua`` on one Redis for every pacing scope (a session, or a lane of a
    ``rate`` session), rebuilding a scope's state from ``last_send`` when it must."""

    def __init__(
        self,
        redis_client: redis.Redis,
        key_prefix: str,
        last_send: Callable[[str], float | None] | None,
    ) -> None:
        self._prefix = key_prefix
        self._last_send = last_send
        # the highest epoch seen per pacing scope: a lower one in Redis is an older copy
        self._epochs: dict[str, int] = {}
        self._lock = threading.Lock()
        # register_script runs EVALSHA and reloads the script on NOSCRIPT, so a SCRIPT FLUSH
        # or a Redis restart costs one extra round trip, not an error.
        self._script = redis_client.register_script(_SCRIPT)

    def key(self, scope: str) -> str:
        """The state hash of one pacing scope."""
        return f"{self._prefix}{scope}"

    def keys(self, scope: str) -> list[str]:
        """Every Redis key of one pacing scope: the state hash and the queue's three sets."""
        return [self.key(scope) + suffix for suffix in _KEY_SUFFIXES]

    def run(self, scope: str, session: str, op: str, args: Sequence[str]) -> list[Any]:
        """One operation; the reply with strings decoded. A rebuild reads PostgreSQL first."""
        reply = self._eval(scope, op, "", args)
        if _is_rebuild(reply):
            log.info("pacing state of %s lost or older than this worker saw; rebuilding", scope)
            reply = self._eval(scope, op, self._floor(session), args)
            if _is_rebuild(reply):  # the script rebuilds whenever it is given a floor
                raise PacingUnavailable(session=session, operation=op, cause="rebuild refused")
        if op in _EPOCH_AT:
            self._saw(scope, int(reply[_EPOCH_AT[op]]))
        return reply

    def leave(self, scope: str, member: str, handoff: float) -> None:
        """Best effort: a waiter that cannot tell Redis lapses by its lease anyway."""
        try:
            self._eval(scope, "leave", "", [member, f"{handoff:.6f}"])
        except PacingUnavailable:
            pass

    def _saw(self, scope: str, epoch: int) -> None:
        with self._lock:
            if epoch > self._epochs.get(scope, 0):
                self._epochs[scope] = epoch

    def _floor(self, session: str) -> str:
        """The session's last send PostgreSQL recorded, as the rebuild's floor ('0' unknown)."""
        if self._last_send is None:
            return "0"
        try:
            last = self._last_send(session)
        except StoreUnavailable as exc:
            # now is the floor anyway (a send may be in flight); PostgreSQL only adds a clock
            # that may run ahead of Redis' one
            log.warning("pacing of %s rebuilt without PostgreSQL's last send: %s", session, exc)
            return "0"
        return "0" if last is None else f"{last:.6f}"

    def _eval(self, scope: str, op: str, floor: str, args: Sequence[str]) -> list[Any]:
        with self._lock:
            known = self._epochs.get(scope, 0)
        try:
            result = self._script(
                keys=self.keys(scope),
                args=[op, PACING_STATE_TTL_S, known, floor, *args],
            )
        except redis.RedisError as exc:
            # Connection refused or cut, timeout, loading, OOM, read-only replica: whatever it
            # is, the pacing state cannot be checked, so the caller must not send.
            raise PacingUnavailable(session=scope, operation=op, cause=str(exc)) from exc
        return [_text(value) if isinstance(value, bytes) else value for value in result]


def _text(value: bytes) -> str:
    return value.decode()


def _is_rebuild(reply: list[Any]) -> bool:
    return len(reply) == 1 and reply[0] == "rebuild"
