"""Session pacing against a real, private Redis: invariant 7 under concurrency and faults.

Every test records the grant times the script reports (Redis clock) and asserts on those, never
on how long the test took. Intervals are small (0.05–0.1 s) so the suite stays fast.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from campaigns.constants import PACING_STATE_TTL_S, PACING_STOP_POLL_S
from campaigns.local.processes import EmbeddedServerError
from campaigns.local.redis import EmbeddedRedis
from campaigns.pacing import PacingCancelled, PacingUnavailable, SessionPacer

CI = os.environ.get("CI", "").lower() == "true"
REPO = Path(__file__).resolve().parents[2]
MIN = 0.05
MAX = 0.08
GUARD = 0.01


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own: flushing or restarting it touches nobody else."""
    embedded = EmbeddedRedis()
    try:
        embedded.start()
    except (EmbeddedServerError, OSError) as exc:
        if CI:
            raise
        pytest.skip(f"embedded redis cannot start here: {exc}")
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


def assert_spaced(grants: list[float], minimum: float = MIN) -> None:
    ordered = sorted(grants)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert gaps, "no two sends recorded"
    assert min(gaps) >= minimum, f"two sends {min(gaps):.4f}s apart (< {minimum}s)"


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
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


# ----------------------------------------------------------------------------- basics


def test_fresh_session_waits_one_full_interval_before_its_first_send(
    pacer: SessionPacer,
) -> None:
    first = pacer.try_acquire("fresh", MIN)
    assert not first.granted
    assert first.wait == pytest.approx(MIN + GUARD, abs=1e-3)
    assert not pacer.try_acquire("fresh", MIN).granted  # the seed holds for everyone


def test_uncontended_slots_are_spaced_by_the_random_gaps(server: EmbeddedRedis) -> None:
    client = connect(server)
    pacer = SessionPacer(client, guard=0.0, rng=random.Random(7))
    drawn = random.Random(7)
    turns = [pacer.wait_for_turn("solo", MIN, 2 * MIN) for _ in range(9)]
    gaps = [drawn.uniform(MIN, 2 * MIN) for _ in turns]
    # Turn 0 is a fresh session's: its grant waits the seeded interval, which moves slot 1.
    turns, gaps = turns[1:], gaps[2:]
    slot_gaps = [b.slot_at - a.slot_at for a, b in itertools.pairwise(turns)]
    for slot_gap, gap in zip(slot_gaps, gaps, strict=True):
        # the next slot is the gap after the later of the previous slot and its actual grant
        assert gap - 1e-5 <= slot_gap <= gap + 0.03
        assert MIN <= slot_gap
    assert len({round(g, 3) for g in slot_gaps}) > 1, "gaps are not random"
    assert_spaced([t.granted_at or 0.0 for t in turns])
    client.close()


def test_key_expires_so_abandoned_sessions_do_not_leak(
    pacer: SessionPacer, server: EmbeddedRedis
) -> None:
    pacer.reserve("gone", MIN, MAX)
    ttl_ms = connect(server).pttl(pacer.key("gone"))
    assert PACING_STATE_TTL_S * 1000 - 5000 < ttl_ms <= PACING_STATE_TTL_S * 1000 + 1000


def test_a_grant_recorded_in_the_future_does_not_stall_the_session(
    pacer: SessionPacer, server: EmbeddedRedis
) -> None:
    """A server clock stepped back leaves 'call' in the future; one interval from now is safe."""
    connect(server).hset(pacer.key("step"), "call", f"{time.time() + 3600:.6f}")
    answer = pacer.try_acquire("step", MIN)
    assert not answer.granted
    assert answer.wait <= MIN + GUARD + 1e-3


def test_script_flush_is_survived(pacer: SessionPacer, server: EmbeddedRedis) -> None:
    pacer.try_acquire("s", MIN)
    connect(server).script_flush()
    assert not pacer.try_acquire("s", MIN).granted  # NOSCRIPT → reloaded, still paced


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
    assert pacer.reserve("busy", MIN, MAX).slot_at >= until
    grants: list[float] = []
    run_threads(4, lambda _: paced_turns(server, "busy", 2, grants, []))
    assert min(grants) >= until
    assert_spaced(grants)
    client.close()


def test_cancelled_wait_raises_and_takes_no_turn(
    pacer: SessionPacer, server: EmbeddedRedis
) -> None:
    pacer.hold("slow", 5.0)
    naps: list[float] = []
    with pytest.raises(PacingCancelled):
        pacer.wait_for_turn("slow", MIN, MAX, sleep=naps.append, stop=lambda: len(naps) >= 3)
    assert len(naps) == 3
    assert all(nap <= PACING_STOP_POLL_S for nap in naps)
    assert connect(server).hget(pacer.key("slow"), "call") is None  # no grant taken


def test_refresh_keeps_a_fresh_grant_and_requeues_a_stale_one(pacer: SessionPacer) -> None:
    turn = pacer.wait_for_turn("claim", MIN, MAX)
    assert pacer.refresh("claim", MIN, turn) is turn  # claimed quickly: send on this grant
    other = pacer.wait_for_turn("claim", MIN, MAX)  # another worker, while our claim stalls
    again = pacer.refresh("claim", MIN, turn)  # stalled past the guard: queue behind it
    assert other.granted_at is not None and again.granted_at is not None
    assert again.granted_at - other.granted_at >= MIN + GUARD


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
            turn = pacer.wait_for_turn("stall", MIN, MAX)
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
    before = pacer.wait_for_turn("sales", MIN, MAX).granted_at
    server.flushall()
    after = pacer.wait_for_turn("sales", MIN, MAX).granted_at
    assert before is not None and after is not None
    assert after - before >= MIN + GUARD


def test_redis_down_means_pacing_unavailable_then_recovery(
    pacer: SessionPacer, server: EmbeddedRedis
) -> None:
    pacer.wait_for_turn("sales", MIN, MAX)
    server.kill()
    with pytest.raises(PacingUnavailable) as caught:
        pacer.try_acquire("sales", MIN)
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    with pytest.raises(PacingUnavailable):
        pacer.reserve("sales", MIN, MAX)
    server.start()
    assert not pacer.try_acquire("sales", MIN).granted  # state lost: a full interval first
    assert pacer.wait_for_turn("sales", MIN, MAX).granted_at is not None


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
