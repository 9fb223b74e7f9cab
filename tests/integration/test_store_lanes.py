"""Sender pools in the store, on a real PostgreSQL: a campaign created with its pool (and a bad
pool argument leaving nothing), claims by lanes (never the same recipient twice, from threads
on their own connections), the sticky sender preference, lanes going down and the pool's stop
when every lane is down, and removing a session that a pool uses."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from campaigns.domain import (
    CampaignStatus,
    LaneState,
    PoolStop,
    RecipientStatus,
    StopKind,
)
from campaigns.errors import InvalidArgument, SessionInUse, UnknownSession
from campaigns.processor import CampaignBatchProcessor
from campaigns.settings import Pacing, Settings
from campaigns.state import CampaignStateManager
from campaigns.store import queries
from tests.plans import rows_visited

POOL = ["s1", "s2", "s3"]
NUMBERS = [f"+5511{910000000 + i}" for i in range(12)]
PACING = Pacing(batch_size=6, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)


@pytest.fixture
def pool(store: CampaignStateManager) -> list[str]:
    for name in POOL:
        store.add_session(name, "console", "console://local")
    return list(POOL)


def _rows(sql: Engine, table: str) -> int:
    with sql.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def _create(store: CampaignStateManager, sessions: Any, numbers: list[str] = NUMBERS) -> Any:
    campaign = store.create_campaign(numbers, "Hi", sessions, pacing=PACING)
    assert campaign.run_token
    return campaign


def _send_all(store: CampaignStateManager, cid: int, token: str, session: str) -> list[str]:
    """Claim and record as sent everything ``session``'s lane may take, batch by batch."""
    phones = []
    for batch in (1, 2):
        while claim := store.claim_for_lane(cid, batch, token, session):
            assert store.record_outcome(claim, RecipientStatus.SENT)
            phones.append(claim.phone)
    return phones


def _age_heartbeat(sql: Engine, cid: int, session: str, seconds: float) -> None:
    with sql.begin() as conn:
        conn.execute(
            text(
                "UPDATE campaign_lanes SET heartbeat_at = now() - make_interval(secs => :s)"
                " WHERE campaign_id = :id AND session_name = :session"
            ),
            {"s": seconds, "id": cid, "session": session},
        )


def test_create_with_a_pool__one_lane_per_session_in_order_and_the_first_is_session_name(
    store: CampaignStateManager, pool: list[str]
) -> None:
    campaign = _create(store, pool)

    assert campaign.sessions == tuple(pool)
    assert campaign.session_name == "s1"  # the original column keeps the first session
    lanes = store.list_lanes(campaign.id)
    assert [(lane.session_name, lane.position, lane.state) for lane in lanes] == [
        ("s1", 1, LaneState.ACTIVE),
        ("s2", 2, LaneState.ACTIVE),
        ("s3", 3, LaneState.ACTIVE),
    ]
    # every finder carries the pool; a pool member finds the campaign by its name
    assert [c.id for c in store.list_campaigns(session="s3")] == [campaign.id]
    assert store.get_campaign(campaign.id).sessions == tuple(pool)


def test_a_one_session_campaign__is_a_pool_of_one(
    store: CampaignStateManager, console_session: str
) -> None:
    campaign = _create(store, console_session)

    assert campaign.sessions == (console_session,)
    [lane] = store.list_lanes(campaign.id)
    assert (lane.session_name, lane.state) == (console_session, LaneState.ACTIVE)


def test_process_large_campaign_array__takes_a_pool_and_enqueues_its_first_batch(
    store: CampaignStateManager, pool: list[str], sql: Engine
) -> None:
    enqueued: list[tuple[Any, ...]] = []
    processor = CampaignBatchProcessor(6, 0, 0, 0, 0, enqueue=lambda *a: enqueued.append(a))
    processor.set_state_manager(store)

    with pytest.raises(InvalidArgument, match="names session 's2' twice"):
        processor.process_large_campaign_array(NUMBERS, "Hi", ["s2", "s2"])
    assert _rows(sql, "campaign_batch_state") == 0 and enqueued == []
    cid = processor.process_large_campaign_array(NUMBERS, "Hi", ["s2", "s1"])

    assert store.get_campaign(cid).sessions == ("s2", "s1")
    assert [lane.session_name for lane in store.list_lanes(cid)] == ["s2", "s1"]
    assert _rows(sql, "campaign_batch_state") == 1 and [c[0] for c in enqueued] == [cid]


def test_claim_recipient__stamps_the_campaigns_session_so_its_sends_count_for_sticky(
    store: CampaignStateManager, pool: list[str]
) -> None:
    # the one-lane claim of today's engine sends through the campaign's session: its sends
    # are stamped like a lane's, shown per session, and preferred by later pools
    earlier = _create(store, "s2", NUMBERS[:2])
    while claim := store.claim_recipient(earlier.id, 1, earlier.run_token):
        assert store.record_outcome(claim, RecipientStatus.SENT)

    assert [r["session_name"] for r in store.recipients(earlier.id)] == ["s2", "s2"]
    assert [lane.sent for lane in store.list_lanes(earlier.id, counts=True)] == [2]
    later = _create(store, ["s1", "s2"], NUMBERS[:2])
    assert [r["preferred_session"] for r in store.recipients(later.id)] == ["s2", "s2"]


@pytest.mark.parametrize(
    ("session", "error", "words"),
    [
        ([], InvalidArgument, "session must be a non-empty name (str) or a non-empty list"),
        (["s1", "s2", "s1"], InvalidArgument, "names session 's1' twice"),
        (["s1", 7], InvalidArgument, "session[1] must be a non-empty name"),
        (["s1", ""], InvalidArgument, "session[1] must be a non-empty name"),
        ({"s1", "s2"}, InvalidArgument, "session must be a non-empty name"),
        (["s1", "nope"], UnknownSession, "argument='session[1]'"),
        ("nope", UnknownSession, "name='nope'"),
    ],
)
def test_create__a_bad_pool_raises_naming_it_and_leaves_nothing(
    store: CampaignStateManager, pool: list[str], sql: Engine, session: Any, error: type,
    words: str,
) -> None:
    with pytest.raises(error) as caught:
        store.create_campaign(NUMBERS, "Hi", session, pacing=PACING)

    assert words in str(caught.value)
    for table in ("campaign_batch_state", "campaign_lanes", "campaign_recipients"):
        assert _rows(sql, table) == 0, table


def test_claims_by_three_lanes_from_threads__each_recipient_once_stamped_with_its_lane(
    store: CampaignStateManager, pool: list[str], database_url: str
) -> None:
    numbers = [f"+5511{920000000 + i}" for i in range(150)]
    campaign = store.create_campaign(numbers, "Hi", pool, pacing=Pacing(batch_size=50))
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def lane(session: str) -> None:
        # each thread its own store and connections, as separate workers would have
        one = Settings(legal_basis="consent", db_pool_size=1)
        own = CampaignStateManager(database_url, settings=one)
        try:
            start.wait()
            for batch in (1, 2, 3):
                while claim := own.claim_for_lane(
                    campaign.id, batch, campaign.run_token or "", session
                ):
                    with lock:
                        claimed.append((session, claim.position))
        finally:
            own.dispose()

    threads = [threading.Thread(target=lane, args=(s,)) for s in pool + pool]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    positions = Counter(position for _, position in claimed)
    assert sorted(positions) == list(range(1, 151))
    assert max(positions.values()) == 1
    assert len({session for session, _ in claimed}) > 1, "one lane took everything"
    stamped = {r["position"]: r["session_name"] for r in store.recipients(campaign.id)}
    assert all(stamped[position] == session for session, position in claimed)


def test_sticky__a_number_goes_back_to_the_pool_session_that_last_sent_it(
    store: CampaignStateManager, pool: list[str]
) -> None:
    earlier = _create(store, ["s1", "s2"])
    first_half, second_half = NUMBERS[:6], NUMBERS[6:]
    # batch 1 (the first six) sent by s1, batch 2 by s2
    for batch, session in ((1, "s1"), (2, "s2")):
        while claim := store.claim_for_lane(earlier.id, batch, earlier.run_token, session):
            store.record_outcome(claim, RecipientStatus.SENT)
    # a later send by s3 (not in the next pool) does not count; a failed send never does
    later = _create(store, ["s3"], first_half[:1])
    claim = store.claim_for_lane(later.id, 1, later.run_token, "s3")
    assert claim is not None and store.record_outcome(claim, RecipientStatus.SENT)
    failed = _create(store, ["s2"], first_half[1:2])
    claim = store.claim_for_lane(failed.id, 1, failed.run_token, "s2")
    assert claim is not None and store.record_outcome(claim, RecipientStatus.FAILED)

    campaign = _create(store, ["s2", "s1"], [*NUMBERS, "+5511930000000"])

    preferred = {r["phone"]: r["preferred_session"] for r in store.recipients(campaign.id)}
    assert {preferred[p] for p in first_half} == {"s1"}
    assert {preferred[p] for p in second_half} == {"s2"}
    assert preferred["+5511930000000"] is None  # never sent: no preference

    unsticky = store.create_campaign(NUMBERS, "Hi", ["s1", "s2"], pacing=PACING, sticky=False)
    assert {r["preferred_session"] for r in store.recipients(unsticky.id)} == {None}


def test_sticky_step__reads_the_new_list_once_whatever_the_statistics_say(
    store: CampaignStateManager, pool: list[str], sql: Engine
) -> None:
    numbers = [f"+5511{940000000 + i}" for i in range(1500)]
    earlier = store.create_campaign(numbers, "Hi", ["s1", "s2"], pacing=Pacing(), sticky=False)
    with sql.begin() as conn:  # its whole list sent, half by each session
        conn.execute(
            text(
                "UPDATE campaign_recipients SET status = 'sent', finished_at = now(),"
                " session_name = CASE WHEN position % 2 = 0 THEN 's1' ELSE 's2' END"
                " WHERE campaign_id = :id"
            ),
            {"id": earlier.id},
        )
    with sql.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # what autovacuum does after the first campaigns: statistics that know nothing of the
        # next one, so the planner expects it to have one row
        conn.execute(text("ANALYZE campaign_recipients"))
    campaign = store.create_campaign(numbers, "Hi", ["s1", "s2"], pacing=Pacing(), sticky=False)

    with sql.connect() as conn, conn.begin() as transaction:
        plan = conn.execute(
            text("EXPLAIN (ANALYZE, FORMAT JSON) " + queries.PREFER_STICKY_SESSIONS.text),
            {"campaign_id": campaign.id, "sessions": ["s1", "s2"]},
        ).scalar_one()
        transaction.rollback()

    # a few rows per recipient (its probes into the sent index), never the list per recipient:
    # joined with itself under a one-row estimate the statement read 1500 x 1500 rows
    assert rows_visited(plan[0]["Plan"]) < 10 * len(numbers)


@pytest.mark.parametrize("statement", ["SKIP_OPTED_OUT_FOR_LANE", "CLAIM_FOR_LANE", "CLAIM_NEXT"])
def test_claims__read_only_the_rows_they_take_whatever_the_statistics_say(
    store: CampaignStateManager, pool: list[str], sql: Engine, statement: str
) -> None:
    with sql.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # statistics taken before the campaign was loaded, as on a fresh deployment or a
        # large ledger the new list is a small part of: the planner expects one row
        conn.execute(text("ANALYZE campaign_recipients"))
    numbers = [f"+5511{950000000 + i}" for i in range(3000)]
    one_batch = Pacing(batch_size=len(numbers), min_interval=0, max_interval=0,
                       batch_delay_min=0, batch_delay_max=0)  # fmt: skip
    campaign = store.create_campaign(numbers, "Hi", ["s1"], pacing=one_batch)
    params = {"campaign_id": campaign.id, "batch_number": 1, "run_token": campaign.run_token,
              "session": "s1", "limit": 32, "stale_after": 30.0}  # fmt: skip

    with sql.connect() as conn, conn.begin() as transaction:
        plan = conn.execute(
            text("EXPLAIN (ANALYZE, FORMAT JSON) " + getattr(queries, statement).text), params
        ).scalar_one()
        transaction.rollback()

    # the rows to take (32 at most) and their probes, never the campaign's pending rows once
    # per row taken: joined with the claimed rows, the UPDATE walked 3,000 x 32 rows a claim
    assert rows_visited(plan[0]["Plan"]) < 20 * 32


def test_sticky__honoured_while_the_preferred_lane_is_active_and_fresh(
    store: CampaignStateManager, pool: list[str], sql: Engine
) -> None:
    earlier = _create(store, ["s1", "s2"], NUMBERS[:6])
    _send_all(store, earlier.id, earlier.run_token, "s1")
    campaign = _create(store, ["s1", "s2"], NUMBERS[:6] + NUMBERS[6:9])
    token = campaign.run_token

    # s2's lane skips the six numbers s1 sent before: it takes only its own share
    taken_by_s2 = _send_all(store, campaign.id, token, "s2")
    assert taken_by_s2 == NUMBERS[6:9]
    assert _send_all(store, campaign.id, token, "s1") == NUMBERS[:6]


def test_sticky__ignored_once_the_preferred_lane_is_stale(
    store: CampaignStateManager, pool: list[str], sql: Engine, settings: Settings
) -> None:
    earlier = _create(store, ["s1", "s2"], NUMBERS[:3])
    _send_all(store, earlier.id, earlier.run_token, "s1")
    campaign = _create(store, ["s1", "s2"], NUMBERS[:3])
    assert store.claim_for_lane(campaign.id, 1, campaign.run_token, "s2") is None

    # s1's lane has not claimed nor heartbeated for longer than the stall timeout: its worker
    # is gone, so its numbers are no longer kept for it
    _age_heartbeat(sql, campaign.id, "s1", settings.stall_timeout + 1)

    assert _send_all(store, campaign.id, campaign.run_token, "s2") == NUMBERS[:3]


def test_a_lane_down__leaves_the_rotation_and_the_other_lane_takes_its_recipients(
    store: CampaignStateManager, pool: list[str]
) -> None:
    earlier = _create(store, ["s1", "s2"], NUMBERS[:3])
    _send_all(store, earlier.id, earlier.run_token, "s1")
    campaign = _create(store, ["s1", "s2"], NUMBERS[:6])
    cid, token = campaign.id, campaign.run_token
    first = store.claim_for_lane(cid, 1, token, "s1")
    assert first is not None and store.release_claim(first, counts_as_attempt=False)

    stop = store.mark_lane_down(cid, "s1", "WAHA session STOPPED", run_token=token)

    assert stop is None  # s2 is still active: the campaign goes on
    assert store.get_campaign(cid).status is CampaignStatus.RUNNING
    lane = store.get_lane(cid, "s1")
    assert lane is not None
    assert (lane.state, lane.stop_kind, lane.reason) == (
        LaneState.DOWN, StopKind.DISCONNECTED, "WAHA session STOPPED"
    )
    assert store.claim_for_lane(cid, 1, token, "s1") is None
    assert store.lane_heartbeat(cid, "s1", token) is False  # stop that lane's run
    assert store.heartbeat(cid, token) is True  # ...but not the campaign
    # s2 takes everything, its own share and the numbers kept for s1
    assert _send_all(store, cid, token, "s2") == NUMBERS[:6]
    assert store.lanes_to_run(cid, token) == ["s2"]


@pytest.mark.parametrize(
    ("downs", "kind", "resume_in"),
    [
        ([("s1", StopKind.BLOCKED, None), ("s2", StopKind.DISCONNECTED, None)],
         StopKind.DISCONNECTED, None),
        ([("s1", StopKind.LIMITED, 3600), ("s2", StopKind.BLOCKED, None),
          ("s3", StopKind.LIMITED, 600)], StopKind.LIMITED, 600),
        ([("s1", StopKind.BLOCKED, None), ("s2", StopKind.BLOCKED, None)],
         StopKind.BLOCKED, None),
    ],
)
def test_every_lane_down__interrupts_the_campaign_with_the_pools_kind_and_resume_at(
    store: CampaignStateManager,
    pool: list[str],
    downs: list[tuple[str, StopKind, int | None]],
    kind: StopKind,
    resume_in: int | None,
) -> None:
    sessions = [name for name, _, _ in downs]
    campaign = _create(store, sessions)
    now = datetime.now(UTC)
    stops = []
    for name, lane_kind, seconds in downs:
        until = now + timedelta(seconds=seconds) if seconds else None
        stops.append(
            store.mark_lane_down(
                campaign.id, name, f"{name} is {lane_kind.value}", kind=lane_kind,
                resume_at=until, run_token=campaign.run_token,
            )
        )

    *before, last = stops
    assert before == [None] * len(before)  # the campaign ran on while a lane was left
    assert isinstance(last, PoolStop) and last.kind is kind
    assert last.reason.startswith("every session of the pool is down: s1 (")
    stopped = store.get_campaign(campaign.id)
    assert (stopped.status, stopped.interrupt_kind) == (CampaignStatus.INTERRUPTED, kind)
    assert stopped.interrupt_reason == last.reason
    if resume_in is None:
        assert stopped.resume_at is None
    else:
        assert stopped.resume_at == now + timedelta(seconds=resume_in)
    assert store.pool_stop(campaign.id) == last


def test_a_pool_of_one__stops_with_its_lanes_own_reason(
    store: CampaignStateManager, console_session: str
) -> None:
    campaign = _create(store, console_session)

    stop = store.mark_lane_down(
        campaign.id, console_session, "Connection Closed", run_token=campaign.run_token
    )

    assert stop == PoolStop(StopKind.DISCONNECTED, "Connection Closed")
    assert store.get_campaign(campaign.id).interrupt_reason == "Connection Closed"


def test_the_last_two_lanes_down_at_once__the_campaign_is_interrupted_exactly_once(
    store: CampaignStateManager, pool: list[str], database_url: str
) -> None:
    campaign = _create(store, ["s1", "s2"])
    start = threading.Barrier(2)
    stops: list[PoolStop | None] = []

    def down(session: str) -> None:
        one = Settings(legal_basis="consent", db_pool_size=1)
        own = CampaignStateManager(database_url, settings=one)
        try:
            start.wait()
            stops.append(
                own.mark_lane_down(campaign.id, session, "down", run_token=campaign.run_token)
            )
        finally:
            own.dispose()

    threads = [threading.Thread(target=down, args=(s,)) for s in ("s1", "s2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # neither may miss the other's commit: exactly one of them sees every lane down
    assert stops.count(None) == 1
    [stop] = [s for s in stops if s is not None]
    assert stop.kind is StopKind.DISCONNECTED
    assert store.get_campaign(campaign.id).status is CampaignStatus.INTERRUPTED


def test_lanes_to_run__brings_back_a_limited_lane_whose_limit_ended_only(
    store: CampaignStateManager, pool: list[str]
) -> None:
    campaign = _create(store, pool)
    cid, token = campaign.id, campaign.run_token
    past, future = datetime.now(UTC) - timedelta(seconds=1), datetime.now(UTC) + timedelta(hours=1)
    store.mark_lane_down(cid, "s1", "capped", kind=StopKind.LIMITED, resume_at=past,
                         run_token=token)
    store.mark_lane_down(cid, "s3", "capped", kind=StopKind.LIMITED, resume_at=future,
                         run_token=token)

    assert store.lanes_to_run(cid, token) == ["s1", "s2"]
    assert store.lanes_to_run(cid, "not-the-token") == []  # the fence holds
    lane = store.get_lane(cid, "s3")
    assert lane is not None and lane.state is LaneState.DOWN


def test_list_lanes_with_counts__claimed_and_sent_per_session(
    store: CampaignStateManager, pool: list[str]
) -> None:
    campaign = _create(store, ["s1", "s2"])
    cid, token = campaign.id, campaign.run_token
    for session, outcome in (("s1", RecipientStatus.SENT), ("s1", RecipientStatus.SENT),
                             ("s2", RecipientStatus.FAILED), ("s2", RecipientStatus.SENT)):
        claim = store.claim_for_lane(cid, 1, token, session)
        assert claim is not None and store.record_outcome(claim, outcome)
    store.claim_for_lane(cid, 1, token, "s2")  # claimed, not yet sent

    lanes = store.list_lanes(cid, counts=True)

    assert [(lane.session_name, lane.claimed, lane.sent) for lane in lanes] == [
        ("s1", 2, 2), ("s2", 3, 1)
    ]
    assert [r["session_name"] for r in store.recipients(cid)][:5] == ["s1", "s1", "s2", "s2",
                                                                      "s2"]


def test_claim_several_for_lane__claims_in_input_order_up_to_the_limit(
    store: CampaignStateManager, pool: list[str]
) -> None:
    campaign = _create(store, ["s1", "s2"])

    claims = store.claim_several_for_lane(campaign.id, 1, campaign.run_token, "s2", limit=4)

    assert [c.position for c in claims] == [1, 2, 3, 4]
    assert store.claim_several_for_lane(campaign.id, 1, "stale-token", "s1", limit=4) == []


def test_remove_session__refused_while_an_unfinished_pool_uses_it_allowed_once_finished(
    store: CampaignStateManager, pool: list[str], sql: Engine
) -> None:
    campaign = _create(store, ["s1", "s2"])

    with pytest.raises(SessionInUse):
        store.remove_session("s2")  # the pool's second session, not its session_name

    store.cancel(campaign.id)
    store.remove_session("s2")
    assert [lane.session_name for lane in store.list_lanes(campaign.id)] == ["s1"]
    assert store.get_campaign(campaign.id).sessions == ("s1", "s2")  # the pool as created
    assert _rows(sql, "campaign_sessions") == 2
