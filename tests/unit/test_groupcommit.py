"""Group commit: concurrent submissions applied together, each answered only once its own items
are applied, an error failing every submission of its group."""

from __future__ import annotations

import threading
import time

import pytest

from campaigns.groupcommit import GroupCommit, Outcome


def test_a_lone_submission_is_applied_alone_and_at_once() -> None:
    calls: list[list[int]] = []
    group = GroupCommit(lambda items: calls.append(items) or len(items))
    outcome = group.submit([1, 2])
    assert (outcome.result, outcome.shared, calls) == (2, False, [[1, 2]])


def test_submissions_arriving_during_a_call_are_applied_together_in_order() -> None:
    calls: list[list[int]] = []
    release = threading.Event()

    def apply(items: list[int]) -> int:
        calls.append(items)
        if len(calls) == 1:
            release.wait(5)  # the first call holds while the others queue up
        return len(items)

    group = GroupCommit(apply)
    results: dict[int, Outcome[int]] = {}

    def submit(k: int) -> None:
        results[k] = group.submit([k])

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    while not calls:
        time.sleep(0.001)
    others = [threading.Thread(target=submit, args=(k,)) for k in range(1, 6)]
    for thread in others:
        thread.start()
    while len(group._queue) < 5:  # every later one waits behind the running call
        time.sleep(0.001)
    release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert calls[0] == [0]
    assert sorted(calls[1]) == [1, 2, 3, 4, 5] and len(calls) == 2
    assert all(results[k].shared for k in range(1, 6))


def test_an_error_fails_each_submission_of_its_group_and_the_next_group_goes_on() -> None:
    def apply(items: list[int]) -> int:
        if 13 in items:
            raise RuntimeError("database down")
        return len(items)

    group = GroupCommit(apply)
    with pytest.raises(RuntimeError, match="database down"):
        group.submit([13])
    assert group.submit([1]).result == 1


def test_a_group_holds_at_most_max_items_and_everyone_is_answered() -> None:
    sizes: list[int] = []
    gate = threading.Event()

    def apply(items: list[int]) -> int:
        sizes.append(len(items))
        gate.wait(5)
        return len(items)

    group = GroupCommit(apply, max_items=3)
    threads = [threading.Thread(target=group.submit, args=([k],)) for k in range(10)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)
    assert sum(sizes) == 10 and max(sizes) <= 3
