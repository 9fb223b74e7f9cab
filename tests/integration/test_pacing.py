"""Session pacing against a real, private Redis: invariant 7 under concurrency and faults, fair
turns, the rate profile's bucket and Redis coming back from an older copy.

Every test records the grant times the script reports (Redis clock) and asserts on those, never
on how long the test took. Intervals are small (0.05–0.1 s) so the suite stays fast.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from campaigns.constants import PACING_STATE_TTL_S, PACING_STOP_POLL_S
from campaigns.local.processes import EmbeddedServerError
from campaigns.local.redis import EmbeddedRedis
from campaigns.pacing import (
    PacingCancelled,
    PacingDeferred,
    PacingUnavailable,
    RateGrant,
    Reservation,
    SessionPacer,
)
from campaigns.profiles import PacingKind, PacingProfile

CI = os.environ.get("CI", "").lower() == "true"
REPO = Path(__file__).resolve().parents[2]
MIN = 0.05
MAX = 0.08
GUARD = 0.01


def start(embedded: EmbeddedRedis) -> EmbeddedRedis:
    try:
        embedded.start()
    except (EmbeddedServerError, OSError) as exc:
        if CI:
            raise
        pytest.skip(f"embedded redis cannot start here: {exc}")
    return embedded


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own: flushing or restarting it touches nobody else."""
    embedded = start(EmbeddedRedis())
    yield embedded
    embedded.stop()


def connect(server: EmbeddedRedis) -> redis.Redis:
    # No client-side retries: a test sees every connection error as PacingUnavailable.
    return redis.Redis.from_url(
        server.url(), socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )


@pytest.fixture
def pacer(server: EmbeddedRedis) -> Iterator[SessionPacer]:
    client = connect(server)
    yield SessionPacer(client, guard=GUARD)
    client.close()


def redis_now(server: EmbeddedRedis) -> float:
    client = connect(server)
    seconds, micros = client.time()
    client.close()
    return seconds + micros / 1e6


def assert_spaced(grants: list[float], minimum: float = MIN) -> None:
    ordered = sorted(grants)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert gaps, "no two sends recorded"
    assert min(gaps) >= minimum, f"two sends {min(gaps):.4f}s apart (< {minimum}s)"


def run_threads(count: int, target: Callable[[int], None], timeout: float = 60) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads)


def paced_turns(
    server: EmbeddedRedis, session: str, turns: int, grants: list[float], errors: list[str]
) -> None:
    """One worker: ``turns`` sends, each after wait_for_turn; retries while Redis is away."""
    client = connect(server)
    pacer = SessionPacer(client, guard=GUARD)
    done = 0
    while done < turns:
        try:
            grants.append(pacer.wait_for_turn(session, MIN, MAX).granted_at or 0.0)
            done += 1
        except PacingUnavailable as exc:
            errors.append(str(exc))  # the engine would release the claim and retry later
            time.sleep(0.02)
    client.close()


def granted(turn: Reservation) -> float:
    assert turn.granted_at is not None
    return turn.granted_at


# ----------------------------------------------------------------------------- basics


def test_fresh_session_waits_one_full_interval_before_its_first_send(
    pacer: SessionPacer, server: EmbeddedRedis
) -> None:
    asked = redis_now(server)
    first = pacer.wait_for_turn("fresh", MIN, MAX)
    assert granted(first) - asked >= MIN + GUARD


def test_uncontended_grants_are_spaced_by_the_random_gaps(server: EmbeddedRedis) -> None:
    client = connect(server)
    pacer = SessionPacer(client, guard=0.0, rng=random.Random(7))
    drawn = random.Random(7)
    turns = [pacer.wait_for_turn("solo", MIN, 2 * MIN, lane="c1") for _ in range(9)]
    gaps = [drawn.uniform(MIN, 2 * MIN) for _ in turns]
    grant_gaps = [granted(b) - granted(a) for a, b in itertools.pairwise(turns)]
    for grant_gap, gap in zip(grant_gaps, gaps[1:], strict=True):
        # each turn is due its own random gap after the previous send
        assert gap - 1e-5 <= grant_gap <= gap + 0.03
    assert len({round(g, 3) for g in grant_gaps}) > 1, "gaps are not random"
    for turn, previous in zip(turns[1:], turns, strict=False):
        assert turn.slot_at >= granted(previous) + MIN  # the due time the lag is measured from
    client.close()


def test_keys_expire_so_abandoned_sessions_do_not_leak(
    pacer: SessionPacer, server: EmbeddedRedis
) -> None:
    pacer.wait_for_turn("gone", MIN, MAX)
    ttl_ms = connect(server).pttl(pacer.key("gone"))
    assert PACING_STATE_TTL_S * 1000 - 5000 < ttl_ms <= PACING_STATE_TTL_S * 1000 + 1000


def test_a_grant_recorded_far_in_the_future_does_not_stall_the_session(
    pacer: SessionPacer, server: EmbeddedRedis
) -> None:
    """A server clock stepped back leaves 'call' in the future; one gap from now is safe."""
    pacer.wait_for_turn("step", MIN, MAX)
    connect(server).hset(pacer.key("step"), "call", f"{time.time() + 3600:.6f}")
    asked = redis_now(server)
    turn = pacer.wait_for_turn("step", MIN, MAX)
    assert granted(turn) - asked <= MAX + GUARD + 0.5


def test_script_flush_is_survived(pacer: SessionPacer, server: EmbeddedRedis) -> None:
    before = granted(pacer.wait_for_turn("s", MIN, MAX))
    connect(server).script_flush()
    after = granted(pacer.wait_for_turn("s", MIN, MAX))  # NOSCRIPT → reloaded, still paced
    assert after - before >= MIN + GUARD


def test_different_sessions_do_not_block_each_other(server: EmbeddedRedis) -> None:
    grants: dict[str, list[float]] = {"a": [], "b": []}
    errors: list[str] = []
    sessions = ["a", "b"]
    run_threads(2, lambda i: paced_turns(server, sessions[i], 6, grants[sessions[i]], errors))
    assert_spaced(grants["a"])
    assert_spaced(grants["b"])
    merged = sorted(grants["a"] + grants["b"])
    closest = min(b - a for a, b in itertools.pairwise(merged))
    assert closest < MIN, "sessions were paced together"


def test_hold_delays_every_worker_of_the_session(server: EmbeddedRedis) -> None:
    client = connect(server)
    pacer = SessionPacer(client, guard=GUARD)
    pacer.wait_for_turn("busy", MIN, MAX)
    until = pacer.hold("busy", 0.3)
    assert pacer.hold("busy", 0.01) == until  # a shorter hold never shortens a longer one
    grants: list[float] = []
    run_threads(4, lambda _: paced_turns(server, "busy", 2, grants, []))
    assert min(grants) >= until
    assert_spaced(grants)
    client.close()


def test_cancelled_wait_raises_takes_no_turn_and_gives_it_back(
    pacer: SessionPacer, server: EmbeddedRedis
) -> None:
    last = granted(pacer.wait_for_turn("slow", 0.5, 0.5, lane="slow"))
    naps: list[float] = []
    with pytest.raises(PacingCancelled):
        pacer.wait_for_turn(
            "slow", 0.5, 0.5, sleep=naps.append, stop=lambda: len(naps) >= 3, lane="slow"
        )
    assert naps and all(nap <= PACING_STOP_POLL_S for nap in naps)
    state = connect(server).hgetall(pacer.key("slow"))
    assert float(state[b"call"]) == pytest.approx(last, abs=1e-6)  # no grant taken
    # the cancelled head is absent at once: the next lane waits its own gap, not a lease
    other = pacer.wait_for_turn("slow", MIN, MIN, lane="other")
    assert granted(other) - last < 0.5


def test_refresh_keeps_a_fresh_grant_moves_a_stale_last_one_and_requeues_otherwise(
    pacer: SessionPacer,
) -> None:
    turn = pacer.wait_for_turn("claim", MIN, MAX, lane="a")
    assert pacer.refresh("claim", MIN, turn) is turn  # claimed quickly: send on this grant
    time.sleep(GUARD)  # stale, but still the session's last grant: it moves to now
    moved = pacer.refresh("claim", MIN, turn)
    assert granted(moved) - granted(turn) < MIN
    other = pacer.wait_for_turn("claim", MIN, MAX, lane="b")  # granted meanwhile
    time.sleep(GUARD)
    again = pacer.refresh("claim", MIN, moved)  # stale, not the last: queue behind it
    assert granted(again) - granted(other) >= MIN + GUARD
    assert granted(other) - granted(moved) >= MIN + GUARD


def test_stalled_claims_never_put_two_requests_closer_than_min_interval(
    server: EmbeddedRedis,
) -> None:
    """Requests leave after a claim that sometimes stalls; their send times stay spaced."""
    sent: list[float] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        client = connect(server)
        pacer = SessionPacer(client, guard=GUARD)
        stalls = random.Random(index)
        for _ in range(4):
            turn = pacer.wait_for_turn("stall", MIN, MAX, lane=f"w{index}")
            time.sleep(stalls.choice([0.0, 0.0, 0.08]))  # the recipient claim, sometimes slow
            pacer.refresh("stall", MIN, turn)
            with lock:
                sent.append(time.monotonic())  # the request leaves (one machine, one clock)
        client.close()

    run_threads(4, worker)
    assert_spaced(sent, MIN)


# ----------------------------------------------------------------------------- concurrency


def test_eight_threads_never_send_closer_than_min_interval(server: EmbeddedRedis) -> None:
    grants: list[float] = []
    run_threads(8, lambda _: paced_turns(server, "sales", 5, grants, []))
    assert len(grants) == 40
    assert_spaced(grants)


def test_three_processes_never_send_closer_than_min_interval(server: EmbeddedRedis) -> None:
    worker = textwrap.dedent(f"""
        import json, time, redis
        from campaigns.pacing import SessionPacer
        client = redis.Redis.from_url({server.url()!r})
        while not client.exists("test:go"):
            time.sleep(0.005)
        pacer = SessionPacer(client, guard={GUARD})
        grants = [pacer.wait_for_turn("sales", {MIN}, {MAX}).granted_at for _ in range(8)]
        print(json.dumps(grants))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", worker], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    connect(server).set("test:go", 1)
    grants: list[float] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        grants += json.loads(out)
    assert len(grants) == 24
    assert_spaced(grants)


# ----------------------------------------------------------------------------- fair turns


def lane_runs(
    server: EmbeddedRedis,
    session: str,
    lane: str,
    sends: int,
    budget: float,
    grants: list[tuple[float, str]],
    lock: threading.Lock,
    interval: tuple[float, float] = (MIN, MAX),
) -> None:
    """One campaign as the engine runs it: task runs of ``budget`` seconds each, every run
    waiting for turns until its budget is spent, then a continuation (the next run)."""
    client = connect(server)
    pacer = SessionPacer(client, guard=GUARD)
    done = 0
    while done < sends:
        deadline = time.monotonic() + budget
        try:
            while done < sends:
                turn = pacer.wait_for_turn(
                    session, *interval, lane=lane,
                    stop=lambda d=deadline: time.monotonic() >= d,  # type: ignore[misc]
                    budget=deadline - time.monotonic(),
                )  # fmt: skip
                with lock:
                    grants.append((granted(turn), lane))
                done += 1
        except PacingCancelled:
            continue  # budget spent while waiting: the continuation asks again at once
        except PacingDeferred as deferred:
            time.sleep(max(deferred.wait - 0.02, 0.0))  # the continuation's countdown
    client.close()


def test_many_lanes_with_short_budgets_keep_the_session_at_its_pace(
    server: EmbeddedRedis,
) -> None:
    """The bug of issue 10: 8 campaigns whose runs are shorter than 8 mean gaps. Reserved slots
    ran ahead of the clock and nothing was sent again; turns now go to who waits."""
    grants: list[tuple[float, str]] = []
    lock = threading.Lock()
    budget = 3 * (MIN + MAX) / 2  # < 8 lanes x mean gap
    run_threads(
        8, lambda i: lane_runs(server, "shared", f"c{i}", 6, budget, grants, lock), timeout=90
    )
    times = sorted(at for at, _ in grants)
    assert len(times) == 48
    assert_spaced(times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # the session keeps its pace: the mean gap is the mean drawn gap plus polling slack
    assert sum(gaps) / len(gaps) <= (MIN + MAX) / 2 + GUARD + 0.05
    assert Counter(lane for _, lane in grants) == {f"c{i}": 6 for i in range(8)}


def test_fifty_lanes_on_one_session_take_turns_in_arrival_order(server: EmbeddedRedis) -> None:
    grants: list[tuple[float, str]] = []
    lock = threading.Lock()
    run_threads(
        50, lambda i: lane_runs(server, "crowd", f"c{i}", 3, 1.0, grants, lock), timeout=120
    )
    ordered = [lane for _, lane in sorted(grants)]
    assert Counter(ordered) == {f"c{i}": 3 for i in range(50)}
    assert_spaced([at for at, _ in grants])
    # every lane gets its share as it goes: no lane is two turns ahead of another
    seen: Counter[str] = Counter()
    for lane in ordered:
        seen[lane] += 1
        spread = seen[lane] - min(seen[f"c{i}"] for i in range(50))
        assert spread <= 2, f"{lane} had {seen[lane]} turns while another had fewer"


def test_a_turn_beyond_the_budget_is_deferred_and_kept_for_the_continuation(
    pacer: SessionPacer,
) -> None:
    last = granted(pacer.wait_for_turn("drip", 0.6, 0.6, lane="slow"))
    with pytest.raises(PacingDeferred) as deferred:
        pacer.wait_for_turn("drip", 0.6, 0.6, lane="slow", budget=0.1)
    assert 0.3 < deferred.value.wait <= 0.6 + GUARD
    time.sleep(deferred.value.wait - 0.1)  # the continuation comes back just before its turn
    turn = pacer.wait_for_turn("drip", 0.6, 0.9, lane="slow", budget=1.0)
    # the turn fixed before the deferral is kept (not redrawn in the new range)
    assert turn.slot_at == pytest.approx(last + 0.6 + GUARD, abs=1e-3)
    assert granted(turn) - last >= 0.6 + GUARD


def test_a_lane_paced_slower_than_its_budget_still_sends(server: EmbeddedRedis) -> None:
    grants: list[tuple[float, str]] = []
    run_threads(
        1,
        lambda _: lane_runs(
            server, "slowpoke", "c1", 3, 0.2, grants, threading.Lock(), interval=(0.5, 0.6)
        ),
    )
    times = sorted(at for at, _ in grants)
    assert len(times) == 3
    assert_spaced(times, 0.5 + GUARD)


def test_a_waiter_that_died_blocks_the_queue_for_its_lease_only(server: EmbeddedRedis) -> None:
    client = connect(server)
    pacer = SessionPacer(client, guard=GUARD, lease=0.4)
    pacer.wait_for_turn("crash", MIN, MIN, lane="first")
    # a waiter asks once, becomes head (its turn 0.5 s away), and its process dies: it never
    # asks or leaves again
    pacer._redis.run(
        "crash", "crash", "turn", ["dead", "0.5", f"{MIN + GUARD}", "0.4", "30", "", ""]
    )
    asked = redis_now(server)
    turn = pacer.wait_for_turn("crash", MIN, MIN, lane="alive")
    # the lane behind waited for the dead head's turn and lease, then took the turn
    assert 0.5 + 0.3 <= granted(turn) - asked
    client.close()


# ----------------------------------------------------------------------------- faults


def test_flushall_mid_run_never_shortens_a_gap(server: EmbeddedRedis) -> None:
    grants: list[float] = []
    flushes: list[float] = []
    stop_flushing = threading.Event()

    def flusher() -> None:
        while not stop_flushing.wait(0.2):
            server.flushall()
            flushes.append(time.time())

    flushing = threading.Thread(target=flusher)
    flushing.start()
    try:
        run_threads(6, lambda _: paced_turns(server, "sales", 4, grants, []))
    finally:
        stop_flushing.set()
        flushing.join()
    assert len(grants) == 24
    assert len(flushes) >= 3, "the run ended before the flushes"
    assert_spaced(grants)


def test_first_send_after_a_flush_waits_a_full_interval(
    pacer: SessionPacer, server: EmbeddedRedis
) -> None:
    before = granted(pacer.wait_for_turn("sales", MIN, MAX))
    server.flushall()
    after = granted(pacer.wait_for_turn("sales", MIN, MAX))
    assert after - before >= MIN + GUARD


def test_rebuild_counts_from_postgresqls_last_send_when_it_is_later(
    server: EmbeddedRedis,
) -> None:
    ahead = redis_now(server) + 0.5  # PostgreSQL's clock runs ahead of Redis' one
    asked: list[str] = []

    def last_send(session: str) -> float:
        asked.append(session)
        return ahead

    client = connect(server)
    pacer = SessionPacer(client, guard=GUARD, last_send=last_send)
    turn = pacer.wait_for_turn("pg", MIN, MAX)
    assert asked == ["pg"]  # read once, for the rebuild only
    assert granted(turn) >= ahead + MIN + GUARD
    pacer.wait_for_turn("pg", MIN, MAX)
    assert asked == ["pg"]
    client.close()


def test_redis_down_means_pacing_unavailable_then_recovery(
    pacer: SessionPacer, server: EmbeddedRedis
) -> None:
    before = granted(pacer.wait_for_turn("sales", MIN, MAX))
    server.kill()
    with pytest.raises(PacingUnavailable) as caught:
        pacer.wait_for_turn("sales", MIN, MAX)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    with pytest.raises(PacingUnavailable):
        pacer.hold("sales", 1.0)
    server.start()
    after = granted(pacer.wait_for_turn("sales", MIN, MAX))  # state lost: a full interval
    assert after - before >= MIN + GUARD


def test_redis_restart_mid_run_never_shortens_a_gap(server: EmbeddedRedis) -> None:
    grants: list[float] = []
    errors: list[str] = []

    def restarter() -> None:
        time.sleep(0.3)
        server.stop()
        time.sleep(0.2)  # long enough that every worker meets the outage
        server.start()  # same port, empty

    restarting = threading.Thread(target=restarter)
    restarting.start()
    try:
        run_threads(4, lambda _: paced_turns(server, "sales", 6, grants, errors))
    finally:
        restarting.join()
    assert errors, "no worker saw the outage"
    assert len(grants) == 24
    assert_spaced(grants)


def test_redis_restarted_from_an_older_snapshot_waits_a_full_interval(tmp_path: Path) -> None:
    """The reproduction of issue 10: the state a snapshot kept looks valid, so the next send
    went out 1 ms after the previous one. The server's run_id changed: the state is rebuilt."""
    folder = tmp_path / "redis"
    embedded = start(EmbeddedRedis(folder))
    try:
        client = redis.Redis.from_url(embedded.url(), socket_timeout=2)  # retries reconnect
        pacer = SessionPacer(client, guard=GUARD)
        pacer.wait_for_turn("sales", MIN, MAX)
        client.save()  # the older copy: an RDB snapshot (like a crash with AOF everysec)
        shutil.copy(folder / "dump.rdb", tmp_path / "older.rdb")
        last = 0.0
        for _ in range(3):
            last = granted(pacer.wait_for_turn("sales", MIN, MAX))
        embedded.kill()
        shutil.copy(tmp_path / "older.rdb", folder / "dump.rdb")
        embedded.start()  # the same port, loading the older copy
        assert client.exists(pacer.key("sales"))  # the stale state is there, looking valid
        after = granted(pacer.wait_for_turn("sales", MIN, MAX))
        assert after - last >= MIN + GUARD
        client.close()
    finally:
        embedded.stop()


def test_state_restored_to_an_older_copy_on_the_same_server_waits_a_full_interval(
    pacer: SessionPacer, server: EmbeddedRedis
) -> None:
    """No restart (a RESTORE of an old dump): the run_id is the same, the epoch went back."""
    client = connect(server)
    pacer.wait_for_turn("sales", MIN, MAX)
    old = client.dump(pacer.key("sales"))
    assert old is not None
    last = 0.0
    for _ in range(3):
        last = granted(pacer.wait_for_turn("sales", MIN, MAX))
    client.restore(pacer.key("sales"), 0, old, replace=True)
    after = granted(pacer.wait_for_turn("sales", MIN, MAX))
    assert after - last >= MIN + GUARD
    client.close()


# ----------------------------------------------------------------------------- rate profile

RATE = PacingProfile(PacingKind.RATE, rate=40.0, in_flight=4)


def _slots(grant: RateGrant) -> list[float]:
    return [grant.first + i * grant.spacing for i in range(grant.tokens)]


def test_rate_slots_are_evenly_spaced_and_never_more_than_rate_in_a_second(
    pacer: SessionPacer,
) -> None:
    # a burst bucket would let burst + rate sends into one second: Meta (and the sandbox)
    # count the throughput per second, so the slots are spaced 1 / rate apart instead
    fresh = pacer.acquire_rate("meta", RATE, 10)
    assert fresh.first >= fresh.at + 1 / RATE.rate * 0.99  # a fresh (or lost) state waits
    first = pacer.wait_for_rate("meta", RATE, 10)
    slots = _slots(first)
    while slots[-1] - slots[0] < 1.5:
        grant = pacer.wait_for_rate("meta", RATE, 3)
        assert grant.first + (grant.tokens - 1) * grant.spacing <= grant.at + RATE.burst * (
            grant.spacing * 1.001
        )  # booked at most burst slots ahead
        slots += _slots(grant)
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= 1 / RATE.rate  # the margin keeps them a little wider, never closer
    for i, start in enumerate(slots):  # any one-second window holds at most rate slots
        assert sum(1 for t in slots[i:] if t < start + 1.0) <= RATE.rate


def test_rate_slots_move_past_a_hold(pacer: SessionPacer) -> None:
    pacer.acquire_rate("meta", RATE)
    until = pacer.hold("meta", 0.3)
    assert pacer.wait_for_rate("meta", RATE).first >= until
    with pytest.raises(PacingDeferred):
        pacer.hold("meta", 5.0)
        pacer.wait_for_rate("meta", RATE, budget=1.0)


def test_rate_session_lanes_pace_themselves_not_the_session(pacer: SessionPacer) -> None:
    """A campaign's intervals on a rate session slow its lane down, never the session."""
    grants: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(4):
        for lane in ("a", "b"):
            turn = pacer.wait_for_turn("meta", 0.1, 0.1, profile=RATE, lane=lane)
            grants[lane].append(granted(turn))
    assert_spaced(grants["a"], 0.1)
    assert_spaced(grants["b"], 0.1)
    merged = sorted(grants["a"] + grants["b"])
    assert min(b - a for a, b in itertools.pairwise(merged)) < 0.1
    # and the session's bucket still counts every lane's sends
    assert len(merged) <= RATE.burst + RATE.rate * (merged[-1] - merged[0]) + 1


def test_human_profile_keeps_the_session_gap(pacer: SessionPacer) -> None:
    human = PacingProfile()
    times = [granted(pacer.wait_for_turn("h", MIN, MAX, profile=human)) for _ in range(4)]
    assert_spaced(times, MIN + GUARD)
