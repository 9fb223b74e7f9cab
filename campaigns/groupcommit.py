"""Group commit: what concurrent callers submit is applied together, one call (one
transaction) for all who arrived while the previous one ran.

Why: a gateway delivers receipts as many small concurrent webhooks (Meta sends about three
statuses per message, one per request), and each must be stored before it is answered 200. One
transaction per request makes the database's round trips and commits the limit; grouping keeps
each request's guarantee (its answer waits for the commit that holds its items; an error fails
every request of the group, which the gateways then send again) while the cost of a commit is
shared. At most one group is applied at a time, so a group grows while its predecessor commits:
a lone request waits for nothing, a storm is applied in few transactions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_GROUP = 500
"""Items applied in one call at most: a group stays one short transaction."""


@dataclass(slots=True)
class _Slot(Generic[T, R]):
    items: Sequence[T]
    done: bool = False
    result: R | None = None
    error: BaseException | None = None
    shared: bool = False


@dataclass(frozen=True, slots=True)
class Outcome(Generic[R]):
    """What a submission got: the result of the call that applied it, and whether that call
    applied other submissions' items too (then the result counts them all)."""

    result: R
    shared: bool


class GroupCommit(Generic[T, R]):
    """Apply submissions with ``apply(items)``, grouping those that arrive while a call runs."""

    def __init__(self, apply: Callable[[list[T]], R], *, max_items: int = MAX_GROUP) -> None:
        self._apply = apply
        self._max = max_items
        self._lock = threading.Condition()
        self._queue: list[_Slot[T, R]] = []
        self._busy = False

    def submit(self, items: Sequence[T]) -> Outcome[R]:
        """Apply ``items`` (with whatever else is waiting) and return once they are applied;
        raise what the call raised if it failed."""
        slot: _Slot[T, R] = _Slot(items)
        with self._lock:
            self._queue.append(slot)
        while True:
            with self._lock:
                while not slot.done and self._busy:
                    self._lock.wait()
                if slot.done:
                    return _outcome(slot)
                self._busy = True  # this caller leads the next group (its own slot, or
                group = self._take()  # an earlier one first when the queue is long)
            try:
                result = self._apply([item for s in group for item in s.items])
            except BaseException as exc:
                self._finish(group, None, exc)
            else:
                self._finish(group, result, None)

    def _take(self) -> list[_Slot[T, R]]:
        group: list[_Slot[T, R]] = []
        count = 0
        while self._queue and (not group or count + len(self._queue[0].items) <= self._max):
            slot = self._queue.pop(0)
            group.append(slot)
            count += len(slot.items)
        return group

    def _finish(
        self, group: list[_Slot[T, R]], result: R | None, error: BaseException | None
    ) -> None:
        with self._lock:
            for slot in group:
                slot.result, slot.error = result, error
                slot.shared = len(group) > 1
                slot.done = True
            self._busy = False
            self._lock.notify_all()  # the group's callers return; the next in line leads


def _outcome(slot: _Slot[T, R]) -> Outcome[R]:
    if slot.error is not None:
        raise slot.error
    assert slot.result is not None
    return Outcome(slot.result, slot.shared)
