"""Every SQL statement the store runs, named, each with a one-line description.

Longer than 400 lines on purpose: it is the catalogue of the store's SQL, one statement a few
lines each, and keeping them together keeps the locking rules in one place.

The locking rules live here, next to the data: the claim locks the campaign row (the fence) and
skips recipients another worker holds; ``finish_batch`` locks the campaign row; takeover is one
conditional UPDATE. Python code never builds SQL from strings.
"""

from __future__ import annotations

from sqlalchemy import text

# Claim the first pending recipient of a batch, in input order, if the caller still holds the
# campaign's fence (status running, same run_token); stamps the heartbeat in the same statement.
# The fence CTE locks the campaign row, so a takeover that swaps the token waits for an
# in-flight claim and every claim after it sees the new token. The recipient is stamped with the
# campaign's session (its first, for a pool), the one this claim sends through.
#
# The outer UPDATE of this and of every claim below finds its rows by key, the positions as
# one array (`= ANY(ARRAY(...))`), never by a join with the claimed rows: the planner, blind to
# a freshly loaded campaign (statistics from before it, one row expected), ran such a join as
# a walk over the whole campaign once per claimed row (645 ms a claim on 72,000 numbers, the
# send rate down from ~500/s to ~60/s). `next` holds the rows pending and locked, so the
# UPDATE needs no status condition of its own.
CLAIM_NEXT = text("""
WITH fence AS (
    UPDATE campaign_batch_state SET heartbeat_at = now()
    WHERE id = :campaign_id AND run_token = :run_token AND status = 'running'
    RETURNING id, session_name
), next AS (
    SELECT r.position FROM campaign_recipients r JOIN fence ON r.campaign_id = fence.id
    WHERE r.campaign_id = :campaign_id AND r.batch_number = :batch_number AND r.status = 'pending'
      AND (r.not_before IS NULL OR r.not_before <= now())
      AND NOT EXISTS (
          SELECT 1 FROM campaign_optouts x WHERE x.phone = r.phone
            AND (x.session_name IS NULL OR x.session_name = fence.session_name))
    ORDER BY r.position LIMIT 1
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE campaign_recipients r
SET status = 'sending', attempts = r.attempts + 1, session_name = fence.session_name,
    claimed_at = now(), updated_at = now()
FROM fence
WHERE r.campaign_id = :campaign_id AND r.position = ANY(ARRAY(SELECT position FROM next))
RETURNING r.position, r.batch_number, r.phone, r.variables, r.attempts, r.variant
""")

# Record the outcome of the gateway call of one claim (sent, failed or unknown); only the holder
# of that claim (same attempt) can record it. A claim that recovery already settled as cut off
# (while PostgreSQL was down) still takes its real outcome: marked unknown, as long as its batch
# is not yet counted in campaign_batch_details; put back to pending (RESEND_UNKNOWN), as long as
# nobody claimed it again (the attempt still matches), which saves a resend.
RECORD_OUTCOME = text("""
UPDATE campaign_recipients r
SET status = CAST(:status AS recipient_status), gateway_message_id = :message_id,
    error_code = :error_code, error_message = :error_message,
    finished_at = now(), updated_at = now()
WHERE r.campaign_id = :campaign_id AND r.position = :position AND r.attempts = :attempt
  AND (r.status = 'sending'
       OR (r.status = 'pending' AND r.error_code = 'cut_off')
       OR (r.status = 'unknown' AND r.error_code = 'cut_off'
           AND NOT EXISTS (SELECT 1 FROM campaign_batch_details d
                           WHERE d.campaign_id = r.campaign_id
                             AND d.batch_number = r.batch_number)))
""")

# RECORD_OUTCOME for a group of sent claims of one campaign (a rate lane records its answers
# in small groups): the same guard per row, one statement for the group.
RECORD_SENT_MANY = text("""
UPDATE campaign_recipients r
SET status = 'sent', gateway_message_id = v.message_id, error_code = NULL,
    error_message = NULL, finished_at = now(), updated_at = now()
FROM unnest(CAST(:positions AS integer[]), CAST(:attempts AS integer[]),
            CAST(:message_ids AS text[])) AS v(position, attempt, message_id)
WHERE r.campaign_id = :campaign_id AND r.position = v.position AND r.attempts = v.attempt
  AND (r.status = 'sending'
       OR (r.status = 'pending' AND r.error_code = 'cut_off')
       OR (r.status = 'unknown' AND r.error_code = 'cut_off'
           AND NOT EXISTS (SELECT 1 FROM campaign_batch_details d
                           WHERE d.campaign_id = r.campaign_id
                             AND d.batch_number = r.batch_number)))
""")

# Taken by record_outcome before RECORD_OUTCOME, in the same transaction: waits while
# finish_batch holds the campaign row (FOR UPDATE, from its count to its commit), so a record
# can never commit between a batch's count and its details row. Under READ COMMITTED the
# RECORD_OUTCOME that follows takes a new snapshot, in which a just-written details row is seen.
LOCK_CAMPAIGN_KEY_SHARE = text("""
SELECT id FROM campaign_batch_state WHERE id = :campaign_id FOR KEY SHARE
""")

# Give a claim back (nothing was sent: throttled, session down, transient error answer). A
# release that is no fault of the recipient gives its attempt back (give_back = 1), so throttling
# never uses up MAX_ATTEMPTS. Reusing the attempt number is safe: only the holder releases, and
# it never records that claim afterwards.
RELEASE_CLAIM = text("""
UPDATE campaign_recipients
SET status = 'pending', attempts = attempts - :give_back, error_code = :error_code,
    error_message = :error_message, updated_at = now()
WHERE campaign_id = :campaign_id AND position = :position
  AND status = 'sending' AND attempts = :attempt
""")

# Stamp the heartbeat if the caller still holds the fence; no row means it lost it.
HEARTBEAT = text("""
UPDATE campaign_batch_state SET heartbeat_at = now()
WHERE id = :campaign_id AND run_token = :run_token AND status = 'running'
RETURNING id
""")

# Lock the campaign row for finish_batch, if the caller holds the fence.
LOCK_FENCED = text("""
SELECT id, total_batches, current_batch FROM campaign_batch_state
WHERE id = :campaign_id AND run_token = :run_token AND status = 'running'
FOR UPDATE
""")

# Ledger counts of one batch by status.
BATCH_COUNTS = text("""
SELECT status, count(*) AS n FROM campaign_recipients
WHERE campaign_id = :campaign_id AND batch_number = :batch_number
GROUP BY status
""")

# Write a batch's details row once; a second finish of the same batch inserts nothing.
INSERT_BATCH_DETAILS = text("""
INSERT INTO campaign_batch_details
    (campaign_id, batch_number, sent_count, failed_count, duplicate_count, invalid_count,
     unknown_count, skipped_count, success, error_message)
VALUES (:campaign_id, :batch_number, :sent, :failed, :duplicate, :invalid, :unknown, :skipped,
        :success, :error_message)
ON CONFLICT (campaign_id, batch_number) DO NOTHING
RETURNING id
""")

# The first batch without a details row: the next step, derived from the ledger's record.
NEXT_UNFINISHED_BATCH = text("""
SELECT min(b) FROM generate_series(1, :total_batches) AS b
WHERE NOT EXISTS (
    SELECT 1 FROM campaign_batch_details d
    WHERE d.campaign_id = :campaign_id AND d.batch_number = b
)
""")

# Advance the state counters by one finished batch, and set what comes next.
ADVANCE_STATE = text("""
UPDATE campaign_batch_state SET
    processed_numbers = processed_numbers + :processed,
    success_count = success_count + :sent,
    failed_count = failed_count + :failed,
    duplicate_count = duplicate_count + :duplicate,
    invalid_count = invalid_count + :invalid,
    unknown_count = unknown_count + :unknown,
    skipped_count = skipped_count + :skipped,
    current_batch = :current_batch,
    next_batch_at = CASE WHEN :completed THEN NULL
                         ELSE now() + make_interval(secs => :delay) END,
    status = CASE WHEN :completed THEN 'completed'::campaign_status ELSE status END,
    run_token = CASE WHEN :completed THEN NULL ELSE run_token END,
    finished_at = CASE WHEN :completed THEN now() ELSE finished_at END,
    heartbeat_at = now(), updated_at = now()
WHERE id = :campaign_id AND status = 'running'
""")

# Move a campaign between statuses, guarded by its allowed source statuses (and, when given,
# the caller's run token). Leaving `running` clears the token, which stops every task of the
# old chain before its next message. The kind of a stop (and a limited one's resume_at) is set
# by the interruption and lives only as long as it: any other status clears them.
TRANSITION = text("""
UPDATE campaign_batch_state SET
    status = CAST(:target AS campaign_status),
    interrupt_reason = CASE WHEN :set_reason THEN :reason ELSE interrupt_reason END,
    interrupt_kind = CASE WHEN CAST(:target AS campaign_status) = 'interrupted'
                          THEN CAST(:kind AS stop_kind) END,
    resume_at = CASE WHEN CAST(:target AS campaign_status) = 'interrupted'
                     THEN CAST(:resume_at AS timestamptz) END,
    run_token = :new_token,
    waiting_reason = NULL, waiting_until = NULL,
    failure_streak = CASE WHEN :new_token IS NULL THEN failure_streak ELSE 0 END,
    heartbeat_at = CASE WHEN :new_token IS NULL THEN heartbeat_at ELSE now() END,
    finished_at = CASE WHEN :finished THEN now() ELSE finished_at END,
    updated_at = now()
WHERE id = :campaign_id
  AND status = ANY(CAST(:sources AS campaign_status[]))
  AND (NOT :check_token OR run_token = :run_token)
  AND (CAST(:if_kind AS stop_kind) IS NULL OR interrupt_kind = CAST(:if_kind AS stop_kind))
RETURNING id
""")

# Take over a running campaign whose chain looks dead, if nobody else did since it was seen.
TAKEOVER_STALLED = text("""
UPDATE campaign_batch_state SET run_token = :new_token, heartbeat_at = now(), updated_at = now()
WHERE id = :campaign_id AND status = 'running'
  AND run_token IS NOT DISTINCT FROM :seen_token
  AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => :stall))
  AND (next_batch_at IS NULL OR next_batch_at < now() - make_interval(secs => :stall))
RETURNING id
""")

# Running campaigns whose heartbeat and next-batch time are both older than the stall timeout.
FIND_STALLED = text("""
SELECT * FROM campaign_batch_state
WHERE status = 'running'
  AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => :stall))
  AND (next_batch_at IS NULL OR next_batch_at < now() - make_interval(secs => :stall))
ORDER BY id
""")

# The original design's stuck-campaign report: running for longer than a threshold (24 h by
# default), however alive its heartbeat looks.
FIND_STUCK = text("""
SELECT * FROM campaign_batch_state
WHERE status = 'running' AND created_at < now() - make_interval(secs => :older_than)
ORDER BY created_at
""")

# Completed campaigns finished more than N days ago; deleting their state row cascades to their
# batch details and recipient ledger (foreign keys ON DELETE CASCADE).
DELETE_FINISHED = text("""
DELETE FROM campaign_batch_state
WHERE status = 'completed'
  AND coalesce(finished_at, updated_at) < now() - make_interval(secs => :days * 86400)
RETURNING id
""")

COUNT_FINISHED = text("""
SELECT count(*) FROM campaign_batch_state
WHERE status = 'completed'
  AND coalesce(finished_at, updated_at) < now() - make_interval(secs => :days * 86400)
""")

# Claims cut off between the gateway call and its record: they become unknown (never resent by
# default). Only claims older than the stall timeout qualify: a live task finishes any gateway
# call well within it, so such a claim has no live holder. Optionally one batch only.
MARK_CUT_OFF_CLAIMS_UNKNOWN = text("""
UPDATE campaign_recipients
SET status = 'unknown', error_code = 'cut_off',
    error_message = 'the send was cut off between the gateway call and its record',
    finished_at = now(), updated_at = now()
WHERE campaign_id = :campaign_id AND status = 'sending'
  AND (CAST(:batch_number AS integer) IS NULL OR batch_number = :batch_number)
  AND claimed_at < now() - make_interval(secs => :older_than)
RETURNING position
""")

# The same cut-off claims under the opt-in RESEND_UNKNOWN policy: back to pending, to be claimed
# and sent again (at-least-once). The attempt count stays: a claim cut off MAX_ATTEMPTS times is
# not released (it becomes unknown), so a message that crashes its worker every time cannot loop
# forever.
RELEASE_CUT_OFF_CLAIMS = text("""
UPDATE campaign_recipients
SET status = 'pending', error_code = 'cut_off',
    error_message = 'the send was cut off between the gateway call and its record; resent '
                    '(RESEND_UNKNOWN)',
    updated_at = now()
WHERE campaign_id = :campaign_id AND status = 'sending'
  AND (CAST(:batch_number AS integer) IS NULL OR batch_number = :batch_number)
  AND claimed_at < now() - make_interval(secs => :older_than)
  AND attempts < :max_attempts
RETURNING position
""")

# The first batch that still has recipients to send (pending or claimed).
FIRST_OPEN_BATCH = text("""
SELECT min(batch_number) FROM campaign_recipients
WHERE campaign_id = :campaign_id AND status IN ('pending', 'sending')
""")

# Live ledger counts of a campaign by status.
CAMPAIGN_COUNTS = text("""
SELECT status, count(*) AS n FROM campaign_recipients
WHERE campaign_id = :campaign_id GROUP BY status
""")

# Ledger counts restricted to finished batches, and the sums of the batch details: invariant 4.
FINISHED_LEDGER_COUNTS = text("""
SELECT r.status, count(*) AS n FROM campaign_recipients r
WHERE r.campaign_id = :campaign_id AND EXISTS (
    SELECT 1 FROM campaign_batch_details d
    WHERE d.campaign_id = r.campaign_id AND d.batch_number = r.batch_number)
GROUP BY r.status
""")

DETAILS_SUMS = text("""
SELECT count(*) AS batches, coalesce(sum(sent_count), 0) AS sent,
       coalesce(sum(failed_count), 0) AS failed, coalesce(sum(duplicate_count), 0) AS duplicate,
       coalesce(sum(invalid_count), 0) AS invalid, coalesce(sum(unknown_count), 0) AS unknown,
       coalesce(sum(skipped_count), 0) AS skipped
FROM campaign_batch_details WHERE campaign_id = :campaign_id
""")

# Mark the later repeats of a number in a campaign as duplicates (the first stays pending).
MARK_DUPLICATES = text("""
UPDATE campaign_recipients r SET status = 'duplicate'
FROM (
    SELECT position FROM (
        SELECT position, row_number() OVER (PARTITION BY phone ORDER BY position) AS n
        FROM campaign_recipients WHERE campaign_id = :campaign_id AND phone IS NOT NULL
    ) ranked WHERE n > 1
) later
WHERE r.campaign_id = :campaign_id AND r.position = later.position AND r.status = 'pending'
""")

# One campaign's state row.
GET_CAMPAIGN = text("""
SELECT * FROM campaign_batch_state WHERE id = :id
""")

# Nested loops off for the duplicate marking of a bulk load (see create_campaign).
NESTLOOP_OFF = text("""
SET LOCAL enable_nestloop = off
""")

# ...and back on.
NESTLOOP_ON = text("""
SET LOCAL enable_nestloop = on
""")

# A new campaign's totals, once its ledger is loaded.
SET_TOTALS = text("""
UPDATE campaign_batch_state
SET total_numbers = :total, total_batches = :batches, current_batch = 1
WHERE id = :id
""")

# Campaigns, newest first, optionally of one status and one session (of their pool).
LIST_CAMPAIGNS = text("""
SELECT *
FROM campaign_batch_state
WHERE (CAST(:status AS campaign_status) IS NULL OR status = :status)
  AND (CAST(:session AS text) IS NULL OR CAST(:session AS varchar) = ANY(sessions))
ORDER BY id DESC
LIMIT :limit
""")

# How many batches of a campaign have their details row.
COUNT_BATCHES_DONE = text("""
SELECT count(*) FROM campaign_batch_details WHERE campaign_id = :id
""")

# The latest recipient error of a campaign (for status displays).
LAST_ERROR = text("""
SELECT error_message
FROM campaign_recipients
WHERE campaign_id = :id
  AND error_message IS NOT NULL
ORDER BY updated_at DESC NULLS LAST
LIMIT 1
""")

# Ledger rows of a campaign in input order, optionally of one status.
LIST_RECIPIENTS = text("""
SELECT position, batch_number, phone, raw, variables, status, attempts, gateway_message_id,
       error_code, error_message, claimed_at, finished_at, session_name, preferred_session,
       variant, delivery_status, delivered_at, read_at
FROM campaign_recipients
WHERE campaign_id = :id
  AND (CAST(:status AS recipient_status) IS NULL OR status = :status)
ORDER BY position
LIMIT :limit
""")

# One page of a campaign's ledger after a position (an export streams the ledger page by page
# along the primary key: flat memory for a million rows).
LIST_RECIPIENTS_AFTER = text("""
SELECT position, batch_number, phone, status, attempts, gateway_message_id, error_code,
       error_message, claimed_at, finished_at, session_name, variant, delivery_status,
       delivered_at, read_at
FROM campaign_recipients
WHERE campaign_id = :id AND position > :after
  AND (CAST(:status AS recipient_status) IS NULL OR status = :status)
ORDER BY position
LIMIT :limit
""")

# A campaign's rows by their number, through the reversed-number index: a full number (exact)
# or its last digits (a prefix of the reversed number); the pattern is a literal when the
# statement reaches PostgreSQL, so the planner reads it as an index range. Ordered by position
# over the matches only (a subquery the planner cannot turn into a walk along the primary key).
RECIPIENTS_BY_NUMBER = text("""
SELECT m.* FROM (
    SELECT position, batch_number, phone, status, attempts, gateway_message_id, error_code,
           error_message, claimed_at, finished_at, session_name, variant, delivery_status,
           delivered_at, read_at
    FROM campaign_recipients
    WHERE campaign_id = :id AND phone IS NOT NULL AND reverse(phone) LIKE :pattern
      AND (CAST(:exact AS varchar) IS NULL OR phone = :exact)
      AND (CAST(:status AS recipient_status) IS NULL OR status = :status)
      AND position > :after
    OFFSET 0
) m
ORDER BY m.position
LIMIT :limit
""")

# Interrupted campaigns, optionally of one session (of their pool) and of one stop kind, oldest
# first.
FIND_INTERRUPTED = text("""
SELECT *
FROM campaign_batch_state
WHERE status = 'interrupted'
  AND (CAST(:session AS text) IS NULL OR CAST(:session AS varchar) = ANY(sessions))
  AND (CAST(:kind AS stop_kind) IS NULL OR interrupt_kind = CAST(:kind AS stop_kind))
ORDER BY id
""")

# Campaigns interrupted by a limit whose end has come (the sweep resumes them).
FIND_DUE_LIMITED = text("""
SELECT *
FROM campaign_batch_state
WHERE status = 'interrupted'
  AND interrupt_kind = 'limited'
  AND resume_at <= now()
ORDER BY id
""")

# Delete one finished campaign (its details and ledger cascade).
DELETE_ONE_FINISHED = text("""
DELETE
FROM campaign_batch_state
WHERE id = :id
  AND status IN ('completed', 'failed', 'cancelled')
RETURNING id
""")

# Input position of a campaign's first recipient still to send.
FIRST_PENDING_POSITION = text("""
SELECT min(position)
FROM campaign_recipients
WHERE campaign_id = :id
  AND status IN ('pending', 'sending')
""")

# Scheduled campaigns whose start time has come.
FIND_DUE_SCHEDULED = text("""
SELECT *
FROM campaign_batch_state
WHERE status = 'scheduled'
  AND next_batch_at <= now()
ORDER BY id
""")

# Sessions that have campaigns (optionally of one stop kind) waiting for them: interrupted as
# a whole (the first session of the pool), or through a down lane of that kind, in a running
# campaign or in one interrupted with that kind (every lane down).
SESSIONS_WITH_INTERRUPTED = text("""
SELECT s.session_name
FROM campaign_batch_state s
WHERE s.status = 'interrupted'
  AND (CAST(:kind AS stop_kind) IS NULL OR s.interrupt_kind = CAST(:kind AS stop_kind))
  AND NOT EXISTS (SELECT 1 FROM campaign_lanes l WHERE l.campaign_id = s.id AND l.state = 'down')
UNION
SELECT l.session_name
FROM campaign_lanes l JOIN campaign_batch_state s ON s.id = l.campaign_id
WHERE l.state = 'down'
  AND (CAST(:kind AS stop_kind) IS NULL OR l.stop_kind = CAST(:kind AS stop_kind))
  AND (s.status = 'running'
       OR (s.status = 'interrupted'
           AND (CAST(:kind AS stop_kind) IS NULL
                OR s.interrupt_kind = CAST(:kind AS stop_kind))))
ORDER BY 1
""")

# Ledger rows of a campaign (invariant 1).
COUNT_LEDGER_ROWS = text("""
SELECT count(*) FROM campaign_recipients WHERE campaign_id = :id
""")

# One more recipient failed in a row.
BUMP_FAILURE_STREAK = text("""
UPDATE campaign_batch_state
SET failure_streak = failure_streak + 1
WHERE id = :id
RETURNING failure_streak
""")

# A recipient was sent: the failure streak is over.
RESET_FAILURE_STREAK = text("""
UPDATE campaign_batch_state SET failure_streak = 0 WHERE id = :id
""")

# Unfinished campaigns with a session in their pool (a session in use is not removed).
COUNT_UNFINISHED_OF_SESSION = text("""
SELECT count(*)
FROM campaign_batch_state
WHERE CAST(:name AS varchar) = ANY(sessions)
  AND status NOT IN ('completed', 'failed', 'cancelled')
""")

# Store the result of a session's health check.
RECORD_SESSION_CHECK = text("""
UPDATE campaign_sessions
SET connection_status = :status, last_error = :error, last_checked_at = now()
WHERE name = :name
""")

# A new run token for a running campaign (an operator's resume restarts its chain).
RESTART_RUN = text("""
UPDATE campaign_batch_state
SET run_token = :token, heartbeat_at = now(), updated_at = now()
WHERE id = :id
  AND status = 'running'
RETURNING id
""")

# --- sender pools: a campaign's lanes (campaigns/store/lanes.py) ---
# Lock order, as everywhere above: the campaign row first, then its lanes. A lane changes state
# only with its campaign row locked, so "every lane is down" is decided by one transaction at a
# time and a lane coming back cannot slip between that count and the interruption.

# A new campaign's pool, one lane per session in the given order, heartbeat fresh.
INSERT_LANES = text("""
INSERT INTO campaign_lanes (campaign_id, session_name, position, heartbeat_at)
SELECT :campaign_id, pool.name, pool.position, now()
FROM unnest(CAST(:sessions AS varchar[])) WITH ORDINALITY AS pool(name, position)
""")

# Sticky sender, once after the bulk load: each pending recipient prefers the pool session that
# last sent to its phone successfully (in any earlier campaign). Index probes per row into the
# partial index ix_campaign_recipients_sent_by_phone (newest first, stops at the first pool
# session); only rows with a match are written. No join of the new campaign with itself: the
# planner knows nothing of its rows yet and nested such a join, reading the campaign once per
# row (quadratic: 100k numbers ran for minutes).
PREFER_STICKY_SESSIONS = text("""
UPDATE campaign_recipients r
SET preferred_session = (
    SELECT h.session_name FROM campaign_recipients h
    WHERE h.phone = r.phone AND h.status = 'sent' AND h.session_name IS NOT NULL
      AND h.session_name = ANY(CAST(:sessions AS varchar[]))
    ORDER BY h.finished_at DESC
    LIMIT 1)
WHERE r.campaign_id = :campaign_id AND r.status = 'pending'
  AND EXISTS (
    SELECT 1 FROM campaign_recipients h
    WHERE h.phone = r.phone AND h.status = 'sent' AND h.session_name IS NOT NULL
      AND h.session_name = ANY(CAST(:sessions AS varchar[])))
""")

# Claim the next pending recipients of a batch for one lane (pending -> sending), in input
# order, stamping the lane's session on them: the fence and heartbeat of CLAIM_NEXT, plus the
# lane's own heartbeat, only while the lane is active. A recipient preferred by another lane is
# left to it while that lane is active and its heartbeat fresher than :stale_after seconds.
_LANE_CANDIDATES = """
    WHERE r.campaign_id = :campaign_id AND r.batch_number = :batch_number AND r.status = 'pending'
      AND (r.not_before IS NULL OR r.not_before <= now())
      AND (r.preferred_session IS NULL OR r.preferred_session = :session
           OR NOT EXISTS (
               SELECT 1 FROM campaign_lanes o
               WHERE o.campaign_id = r.campaign_id AND o.session_name = r.preferred_session
                 AND o.state = 'active'
                 AND o.heartbeat_at > now() - make_interval(secs => :stale_after)))"""
"""The recipients a lane may claim next: shared, as a constant, by the claim and by the opt-out
skip that runs before it, which must look at exactly the rows the claim would take."""

CLAIM_FOR_LANE = text(f"""
WITH fence AS (
    UPDATE campaign_batch_state SET heartbeat_at = now()
    WHERE id = :campaign_id AND run_token = :run_token AND status = 'running'
    RETURNING id
), lane AS (
    UPDATE campaign_lanes l SET heartbeat_at = now()
    FROM fence
    WHERE l.campaign_id = fence.id AND l.session_name = :session AND l.state = 'active'
    RETURNING l.campaign_id
), next AS (
    SELECT r.position FROM campaign_recipients r JOIN lane ON r.campaign_id = lane.campaign_id
{_LANE_CANDIDATES}
      AND NOT EXISTS (
          SELECT 1 FROM campaign_optouts x
          WHERE x.phone = r.phone AND (x.session_name IS NULL OR x.session_name = :session))
    ORDER BY r.position LIMIT :limit
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE campaign_recipients r
SET status = 'sending', attempts = r.attempts + 1, session_name = :session,
    claimed_at = now(), updated_at = now()
WHERE r.campaign_id = :campaign_id AND r.position = ANY(ARRAY(SELECT position FROM next))
RETURNING r.position, r.batch_number, r.phone, r.variables, r.attempts, r.variant
""")

# Stamp the campaign's and one active lane's heartbeat if the caller holds the fence; no row
# means the fence is lost or the lane is down.
LANE_HEARTBEAT = text("""
WITH fence AS (
    UPDATE campaign_batch_state SET heartbeat_at = now()
    WHERE id = :campaign_id AND run_token = :run_token AND status = 'running'
    RETURNING id
)
UPDATE campaign_lanes l SET heartbeat_at = now()
FROM fence
WHERE l.campaign_id = fence.id AND l.session_name = :session AND l.state = 'active'
RETURNING l.session_name
""")

# The lanes to run now, if the caller holds the fence: the active ones and the limited ones
# whose limit has ended (made active again), heartbeats stamped as their runs start.
LANES_TO_RUN = text("""
WITH fence AS (
    SELECT id FROM campaign_batch_state
    WHERE id = :campaign_id AND run_token = :run_token AND status = 'running'
    FOR UPDATE
)
UPDATE campaign_lanes l
SET state = 'active', stop_kind = NULL, reason = NULL, resume_at = NULL, heartbeat_at = now(),
    updated_at = CASE WHEN l.state = 'down' THEN now() ELSE l.updated_at END
FROM fence
WHERE l.campaign_id = fence.id
  AND (l.state = 'active' OR (l.stop_kind = 'limited' AND l.resume_at <= now()))
RETURNING l.session_name, l.position
""")

# Lock a campaign's row whatever its status or token (a lane changes state under it).
LOCK_CAMPAIGN = text("""
SELECT id, status FROM campaign_batch_state WHERE id = :campaign_id FOR UPDATE
""")

# Take a lane out of the rotation with the kind of its stop.
SET_LANE_DOWN = text("""
UPDATE campaign_lanes
SET state = 'down', stop_kind = CAST(:kind AS stop_kind), reason = :reason,
    resume_at = CAST(:resume_at AS timestamptz), updated_at = now()
WHERE campaign_id = :campaign_id AND session_name = :session
RETURNING session_name
""")

# A campaign's lanes in pool order, locked (after the campaign row) to decide on all of them.
LOCK_LANES = text("""
SELECT * FROM campaign_lanes WHERE campaign_id = :campaign_id ORDER BY position FOR UPDATE
""")

# A campaign's lanes in pool order.
LIST_LANES = text("""
SELECT * FROM campaign_lanes WHERE campaign_id = :campaign_id ORDER BY position
""")

# Recipients claimed and sent per session of one campaign.
LANE_COUNTS = text("""
SELECT session_name, count(*) AS claimed, count(*) FILTER (WHERE status = 'sent') AS sent
FROM campaign_recipients
WHERE campaign_id = :campaign_id AND session_name IS NOT NULL
GROUP BY session_name
""")

# Put down lanes of one campaign back in the rotation (a resume): of one session or all, of
# one kind or any, and with :due_only only those whose resume_at has come. Any campaign
# status: the resume that follows decides whether the campaign runs.
ACTIVATE_LANES = text("""
UPDATE campaign_lanes
SET state = 'active', stop_kind = NULL, reason = NULL, resume_at = NULL, heartbeat_at = now(),
    updated_at = now()
WHERE campaign_id = :campaign_id AND state = 'down'
  AND (CAST(:session AS varchar) IS NULL OR session_name = :session)
  AND (CAST(:kind AS stop_kind) IS NULL OR stop_kind = CAST(:kind AS stop_kind))
  AND (NOT :due_only OR resume_at <= now())
RETURNING session_name
""")

# The same across running campaigns (a session reconnected, a lane's limit ended), with each
# campaign row locked first: a campaign interrupted meanwhile (every lane down) is left to the
# resume of interrupted campaigns, so no lane turns active under an interrupted campaign.
ACTIVATE_RUNNING_LANES = text("""
WITH running AS (
    SELECT s.id FROM campaign_batch_state s
    WHERE s.status = 'running' AND s.id IN (
        SELECT l.campaign_id FROM campaign_lanes l
        WHERE l.state = 'down'
          AND (CAST(:session AS varchar) IS NULL OR l.session_name = :session)
          AND (CAST(:kind AS stop_kind) IS NULL OR l.stop_kind = CAST(:kind AS stop_kind))
          AND (NOT :due_only OR l.resume_at <= now()))
    ORDER BY s.id
    FOR UPDATE OF s
)
UPDATE campaign_lanes l
SET state = 'active', stop_kind = NULL, reason = NULL, resume_at = NULL, heartbeat_at = now(),
    updated_at = now()
FROM running
WHERE l.campaign_id = running.id AND l.state = 'down'
  AND (CAST(:session AS varchar) IS NULL OR l.session_name = :session)
  AND (CAST(:kind AS stop_kind) IS NULL OR l.stop_kind = CAST(:kind AS stop_kind))
  AND (NOT :due_only OR l.resume_at <= now())
RETURNING l.campaign_id, l.session_name
""")

# remove_session: the lanes of finished campaigns go with the session (their recipients keep
# its name); an unfinished campaign's lane keeps the session (the foreign key refuses).
DELETE_FINISHED_LANES_OF_SESSION = text("""
DELETE FROM campaign_lanes l
USING campaign_batch_state s
WHERE l.session_name = :name AND s.id = l.campaign_id
  AND s.status IN ('completed', 'failed', 'cancelled')
""")

# Which of these names are registered sessions (a pool is checked before anything is written).
EXISTING_SESSIONS = text("""
SELECT name FROM campaign_sessions WHERE name = ANY(CAST(:names AS varchar[]))
""")

# --- the run lease: one live task run per campaign (campaigns/store/sending.py) ---
# The right to send and to enqueue what comes next. Taken by a run of the current token, if the
# lease is free, its own, or expired, and only for a batch without its details row (a stale copy
# of a finished batch takes nothing); renewed by the run's heartbeats; let go when it ends. It
# lives on the campaign row today; one lease per lane would be the same three statements on
# campaign_lanes, keyed by (campaign_id, session_name).
TAKE_RUN_LEASE = text("""
UPDATE campaign_batch_state
SET run_lease = :lease, run_lease_until = now() + make_interval(secs => :ttl),
    heartbeat_at = now()
WHERE id = :campaign_id AND run_token = :run_token AND status = 'running'
  AND (run_lease IS NULL OR run_lease = :lease OR run_lease_until <= now())
  AND NOT EXISTS (SELECT 1 FROM campaign_batch_details d
                  WHERE d.campaign_id = :campaign_id AND d.batch_number = :batch_number)
RETURNING id
""")

# Why TAKE_RUN_LEASE took nothing: the fence is gone, the batch is finished, or another run
# holds the lease (for how many more seconds, unless it renews it).
RUN_LEASE_STATE = text("""
SELECT (s.status = 'running' AND s.run_token IS NOT DISTINCT FROM :run_token) AS fenced,
       EXISTS (SELECT 1 FROM campaign_batch_details d
               WHERE d.campaign_id = s.id AND d.batch_number = :batch_number) AS batch_done,
       coalesce(greatest(extract(epoch FROM s.run_lease_until - now()), 0), 0) AS held_for
FROM campaign_batch_state s WHERE s.id = :campaign_id
""")

# The heartbeat of the lease's holder: stamps the heartbeat and renews the lease, if the caller
# still holds both the fence and the lease; no row means it lost one of them and must stop.
HEARTBEAT_LEASED = text("""
UPDATE campaign_batch_state
SET heartbeat_at = now(), run_lease_until = now() + make_interval(secs => :ttl)
WHERE id = :campaign_id AND run_token = :run_token AND status = 'running'
  AND run_lease = :lease
RETURNING id
""")

# A run ends: its lease is free at once for the continuation or the next batch.
RELEASE_RUN_LEASE = text("""
UPDATE campaign_batch_state SET run_lease = NULL, run_lease_until = NULL
WHERE id = :campaign_id AND run_lease = :lease
""")

# The session's last recorded send, for the pacer's rebuild of lost Redis state: the latest
# finished recipient of the current and the previous batch of each campaign with the session in
# its pool that was alive within :window seconds. One primary-key range per campaign (two
# batches of positions), never a whole list; the campaigns are few and read only at a rebuild,
# so no index is needed. A pool's window holds its other sessions' sends too: a later floor
# only makes the rebuild safer.
SESSION_LAST_SEND = text("""
SELECT extract(epoch FROM max(last.finished_at)) AS last_send
FROM campaign_batch_state c
CROSS JOIN LATERAL (
    SELECT max(r.finished_at) AS finished_at FROM campaign_recipients r
    WHERE r.campaign_id = c.id
      AND r.position > (greatest(c.current_batch, 1) - 2) * c.batch_size
      AND r.position <= greatest(c.current_batch, 1) * c.batch_size
) last
WHERE CAST(:session AS varchar) = ANY(c.sessions)
  AND c.heartbeat_at > now() - make_interval(secs => :window)
""")

# --- sender protection (campaigns.capacity, deferrals of recipient-level answers) ---

# The sends of some sessions in the last :seconds, for the capacity counts rebuilt after Redis
# lost them: the recorded ones (the partial index ix_campaign_recipients_sent_by_session), and
# the claims in flight or cut off (their capacity was taken before the call; a rebuild is rare,
# so these few rows may cost a scan).
SENDS_SINCE = text("""
SELECT extract(epoch FROM finished_at) AS at, campaign_id, position, phone
FROM campaign_recipients
WHERE status = 'sent' AND session_name = ANY(CAST(:sessions AS varchar[]))
  AND finished_at > now() - make_interval(secs => :seconds)
UNION ALL
SELECT extract(epoch FROM coalesce(claimed_at, updated_at)), campaign_id, position, phone
FROM campaign_recipients
WHERE status IN ('sending', 'unknown') AND session_name = ANY(CAST(:sessions AS varchar[]))
  AND coalesce(claimed_at, updated_at) > now() - make_interval(secs => :seconds)
""")

# The Cloud API sessions of a business portfolio: named by their portfolio option, or, without
# one, a portfolio of their own name.
PORTFOLIO_SESSIONS = text("""
SELECT name FROM campaign_sessions
WHERE gateway = 'cloud-api' AND coalesce(nullif(options ->> 'portfolio', ''), name) = :portfolio
""")

# Day 0 of a session's warm-up: its first send (set by the first one that asks).
WARMUP_START = text("""
UPDATE campaign_sessions SET first_sent_at = coalesce(first_sent_at, now())
WHERE name = :session
RETURNING extract(epoch FROM now() - first_sent_at) AS age
""")

# Lock the campaign row for a deferral that may add the retry batch (taken first, as
# finish_batch does, so the two serialise).
LOCK_RETRY_BATCH = text("""
SELECT total_batches, current_batch, retry_batch FROM campaign_batch_state
WHERE id = :campaign_id FOR UPDATE
""")

# Add the trailing batch of recipients deferred for a day.
ADD_RETRY_BATCH = text("""
UPDATE campaign_batch_state
SET total_batches = total_batches + 1, retry_batch = total_batches + 1, updated_at = now()
WHERE id = :campaign_id
RETURNING retry_batch
""")

# The held claim's deferrals so far (None: no longer held).
CLAIM_DEFERRALS = text("""
SELECT deferrals FROM campaign_recipients
WHERE campaign_id = :campaign_id AND position = :position
  AND status = 'sending' AND attempts = :attempt
FOR UPDATE
""")

# Give a claim back to be sent not before :wait seconds from now, in :batch_number (its own,
# or the retry batch), its attempt given back: the answer was about the recipient's limits,
# not a failure of the send.
DEFER_CLAIM = text("""
UPDATE campaign_recipients
SET status = 'pending', attempts = attempts - 1, deferrals = deferrals + 1,
    not_before = now() + make_interval(secs => :wait), batch_number = :batch_number,
    error_code = :error_code, error_message = :error_message, updated_at = now()
WHERE campaign_id = :campaign_id AND position = :position
  AND status = 'sending' AND attempts = :attempt
""")

# A held claim ends skipped (the recipient stopped marketing messages: never sent, never
# retried), counted like any finished recipient.
SKIP_CLAIM = text("""
UPDATE campaign_recipients
SET status = 'skipped', error_code = :error_code, error_message = :error_message,
    finished_at = now(), updated_at = now()
WHERE campaign_id = :campaign_id AND position = :position
  AND status = 'sending' AND attempts = :attempt
RETURNING phone, session_name
""")

# Seconds until the first deferred recipient of a batch may be claimed (None: none waits).
NEXT_NOT_BEFORE = text("""
SELECT extract(epoch FROM min(not_before) - now()) FROM campaign_recipients
WHERE campaign_id = :campaign_id AND batch_number = :batch_number AND status = 'pending'
  AND not_before > now()
""")

# What a running campaign waits for, and until when (cleared by its next send).
SET_WAITING = text("""
UPDATE campaign_batch_state
SET waiting_reason = :reason, waiting_until = now() + make_interval(secs => :wait)
WHERE id = :campaign_id AND run_token = :run_token AND status = 'running'
""")
CLEAR_WAITING = text("""
UPDATE campaign_batch_state SET waiting_reason = NULL, waiting_until = NULL
WHERE id = :campaign_id AND waiting_reason IS NOT NULL
""")

# --- consent: the opt-out list (campaigns.consent) ---

# Add a number to the opt-out list (global when :session is NULL) from one source; an existing
# entry of that source keeps its first time, the proof of when it was first asked for. Returns
# the row when new.
ADD_OPTOUT = text("""
INSERT INTO campaign_optouts (phone, session_name, source, detail, via_session)
VALUES (:phone, :session, :source, :detail, :via_session)
ON CONFLICT (phone, session_name, source) DO NOTHING
RETURNING id
""")

# Remove a number's entries of one scope, optionally only those from one of :sources recorded
# at or before :before.
REMOVE_OPTOUT = text("""
DELETE FROM campaign_optouts
WHERE phone = :phone AND session_name IS NOT DISTINCT FROM :session
  AND (CAST(:sources AS varchar[]) IS NULL OR source = ANY(CAST(:sources AS varchar[])))
  AND (CAST(:before AS timestamptz) IS NULL OR created_at <= CAST(:before AS timestamptz))
""")

# Whether a number may not be messaged through :session (its own entry or a global one).
IS_OPTED_OUT = text("""
SELECT EXISTS (SELECT 1 FROM campaign_optouts
               WHERE phone = :phone AND (session_name IS NULL OR session_name = :session))
""")

# A page of the list in insertion order, optionally of one scope (:scope '' = global only).
LIST_OPTOUTS_AFTER = text("""
SELECT id, phone, session_name, source, detail, via_session, created_at
FROM campaign_optouts
WHERE id > :after
  AND (CAST(:scope AS varchar) IS NULL
       OR (CAST(:scope AS varchar) = '' AND session_name IS NULL)
       OR session_name = CAST(:scope AS varchar))
ORDER BY id
LIMIT :limit
""")

COUNT_OPTOUTS = text("""
SELECT count(*) FROM campaign_optouts
""")

# After a bulk import: the planner's statistics of the list, so the claim's check keeps its
# one-probe plan (autovacuum would get there too, minutes later, while campaigns claim).
# After a large campaign is loaded: the planner's statistics of the ledger predate it until
# autovacuum comes by (which, for a ledger of many campaigns, a new list may never trigger).
# With them it expected a few rows of the new campaign and read a page of its recipients by a
# bitmap scan of the whole campaign and a sort (163 ms on 200,000 rows, 0.1 ms after ANALYZE).
ANALYZE_RECIPIENTS = text("""
ANALYZE campaign_recipients
""")

ANALYZE_OPTOUTS = text("""
ANALYZE campaign_optouts
""")

# An import streams into a temporary table first (COPY), then joins the list in one statement.
CREATE_OPTOUT_IMPORT = text("""
CREATE TEMPORARY TABLE optout_import (phone varchar(20)) ON COMMIT DROP
""")
COPY_OPTOUT_IMPORT = "COPY optout_import (phone) FROM STDIN WITH (FORMAT csv)"
INSERT_OPTOUT_IMPORT = text("""
INSERT INTO campaign_optouts (phone, session_name, source, detail)
SELECT DISTINCT phone, CAST(:session AS varchar), :source, :detail FROM optout_import
ON CONFLICT (phone, session_name, source) DO NOTHING
""")

# Before a lane's claim, in its transaction: the recipients the claim would take next (the
# same candidates, in input order) whose number is on the list for the lane's session end
# skipped, counted like any finished recipient. The claim that follows leaves them out, so a
# number added while the campaign runs is never claimed, whichever worker holds the batch.
# The outer UPDATE finds its rows by key, as CLAIM_NEXT's does (why there).
SKIP_OPTED_OUT_FOR_LANE = text(f"""
WITH fence AS (
    SELECT id FROM campaign_batch_state
    WHERE id = :campaign_id AND run_token = :run_token AND status = 'running'
), next AS (
    SELECT r.position, r.phone FROM campaign_recipients r JOIN fence ON r.campaign_id = fence.id
{_LANE_CANDIDATES}
    ORDER BY r.position LIMIT :limit
    FOR UPDATE OF r SKIP LOCKED
), listed AS (
    SELECT next.position, o.* FROM next
    CROSS JOIN LATERAL (
        SELECT session_name, source, created_at FROM campaign_optouts
        WHERE phone = next.phone AND (session_name IS NULL OR session_name = :session)
        ORDER BY session_name NULLS FIRST LIMIT 1) o
)
UPDATE campaign_recipients r
SET status = 'skipped', error_code = 'opted_out', session_name = :session,
    error_message = 'on the opt-out list (' || coalesce(o.session_name, 'global') || ', '
                    || o.source || ', since ' || to_char(o.created_at, 'YYYY-MM-DD') || ')',
    finished_at = now(), updated_at = now()
FROM listed o
WHERE r.campaign_id = :campaign_id AND r.position = ANY(ARRAY(SELECT position FROM listed))
  AND r.position = o.position
RETURNING r.position
""")

# --- content and follow-ups (campaigns.store.creation) ---

# The list's variable names, known once the whole list went through the creation's checks.
SET_COLUMNS = text("""
UPDATE campaign_batch_state SET columns = CAST(:columns AS text[]) WHERE id = :id
""")

# The cross-campaign duplicate window: a pending recipient whose number a session of the pool
# messaged within :seconds (in another campaign) is a duplicate, never sent, the earlier
# campaign named. One probe per number of the sent-by-phone index (:sent is 'sent': a bound
# value, inlined by the driver, so that the index's predicate matches and the transition
# check reads this as the pending -> duplicate change it is).
MARK_RECENTLY_MESSAGED = text("""
UPDATE campaign_recipients r
SET status = 'duplicate', error_code = 'recently_messaged',
    error_message = 'messaged by campaign ' || h.campaign_id || ' through ' || h.session_name
                    || ' at ' || to_char(h.finished_at AT TIME ZONE 'UTC',
                                         'YYYY-MM-DD HH24:MI') || ' UTC'
FROM campaign_recipients n
CROSS JOIN LATERAL (
    SELECT p.campaign_id, p.session_name, p.finished_at FROM campaign_recipients p
    WHERE p.phone = n.phone AND p.status = CAST(:sent AS recipient_status)
      AND p.session_name IS NOT NULL
      AND p.session_name = ANY(CAST(:sessions AS varchar[]))
      AND p.finished_at > now() - make_interval(secs => :seconds)
      AND p.campaign_id <> :campaign_id
    ORDER BY p.finished_at DESC LIMIT 1) h
WHERE n.campaign_id = :campaign_id AND n.status = 'pending'
  AND r.campaign_id = :campaign_id AND r.position = n.position AND r.status = 'pending'
""")

# What a retry of campaign :old_id would take: its recipients in :statuses (with :error_code
# when given), how many of them are now opted out (globally or for a session of its pool), and
# how many an earlier follow-up of it already holds.
FOLLOWUP_CANDIDATES = text("""
WITH picked AS (
    SELECT r.phone,
           EXISTS (SELECT 1 FROM campaign_optouts o WHERE o.phone = r.phone
                   AND (o.session_name IS NULL
                        OR o.session_name = ANY(CAST(:sessions AS varchar[])))) AS opted,
           r.phone IN (SELECT f.phone FROM campaign_recipients f
                       JOIN campaign_batch_state s ON s.id = f.campaign_id
                       WHERE s.retry_of = :old_id AND f.phone IS NOT NULL) AS retried
    FROM campaign_recipients r
    WHERE r.campaign_id = :old_id
      AND r.status = ANY(CAST(:statuses AS recipient_status[]))
      AND (CAST(:error_code AS varchar) IS NULL OR r.error_code = :error_code)
)
SELECT count(*) AS matching, count(*) FILTER (WHERE opted) AS opted_out,
       count(*) FILTER (WHERE retried AND NOT opted) AS already_retried
FROM picked
""")

# The follow-up's ledger: those recipients, in their original order, with their variables and
# chosen variants, pending in the new campaign (the opted-out and already-retried left out).
INSERT_FOLLOWUP_RECIPIENTS = text("""
INSERT INTO campaign_recipients
    (campaign_id, position, batch_number, phone, raw, variables, status, variant)
SELECT :new_id, n, (n - 1) / :batch_size + 1, phone, raw, variables, 'pending', variant
FROM (
    SELECT r.phone, r.raw, r.variables, r.variant,
           row_number() OVER (ORDER BY r.position) AS n
    FROM campaign_recipients r
    WHERE r.campaign_id = :old_id
      AND r.status = ANY(CAST(:statuses AS recipient_status[]))
      AND (CAST(:error_code AS varchar) IS NULL OR r.error_code = :error_code)
      AND NOT EXISTS (SELECT 1 FROM campaign_optouts o WHERE o.phone = r.phone
                      AND (o.session_name IS NULL
                           OR o.session_name = ANY(CAST(:sessions AS varchar[]))))
      AND r.phone NOT IN (SELECT f.phone FROM campaign_recipients f
                          JOIN campaign_batch_state s ON s.id = f.campaign_id
                          WHERE s.retry_of = :old_id AND f.phone IS NOT NULL)
) picked
""")

# A campaign's skipped and duplicate recipients by reason (error_code): skipped 'opted_out' (on
# the list at the claim) or a gateway's code (131050); a duplicate repeated in the list has
# none, one inside the duplicate window 'recently_messaged'. What `status` breaks them down by.
OUTCOME_REASONS = text("""
SELECT status, error_code, count(*) AS n FROM campaign_recipients
WHERE campaign_id = :campaign_id AND status IN ('skipped', 'duplicate')
GROUP BY status, error_code
""")

# ---- the operators' HTTP API tokens (campaigns/store/tokens.py) ----

# A new token: its name, the SHA-256 hex of the token (never the token) and its scope. A revoked
# token keeps its row (the audit of who had access), so its name stays taken.
INSERT_TOKEN = text("""
INSERT INTO api_tokens (name, token_hash, scope) VALUES (:name, :token_hash, :scope)
""")

# Every token, by name: never its hash (of no use to an operator, and one less thing to leak).
LIST_TOKENS = text("""
SELECT name, scope, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY name
""")

# Revoke a live token by name; a second revoke matches nothing (the first time stays recorded).
REVOKE_TOKEN = text("""
UPDATE api_tokens SET revoked_at = now() WHERE name = :name AND revoked_at IS NULL
""")

# Whether a token of that name exists at all (to tell "unknown" from "already revoked").
TOKEN_REVOKED_AT = text("""
SELECT revoked_at FROM api_tokens WHERE name = :name
""")

# The scope of a live token by its hash, stamping its use at most once a minute: one write per
# request would turn every read of the API into a write. One statement: the stamp and the read
# cannot disagree, and a token revoked meanwhile matches neither.
USE_TOKEN = text("""
WITH live AS (
    SELECT id, scope, last_used_at FROM api_tokens
    WHERE token_hash = :token_hash AND revoked_at IS NULL
), stamped AS (
    UPDATE api_tokens t SET last_used_at = now() FROM live
    WHERE t.id = live.id
      AND (live.last_used_at IS NULL OR live.last_used_at < now() - interval '1 minute')
    RETURNING t.id
)
SELECT scope FROM live
""")

# --- delivery receipts (campaigns.store.receipts) ---
# Receipts are looked up under the gateway's id and its bare key (campaigns.receipts.message_key:
# WAHA's serialized "true_<jid>_<key>" and the "<key>" NOWEB and Evolution store), through the
# partial index ix_campaign_recipients_gateway_message_id; pending ones are kept by key.

# Serialise a delivery's receipts with the record of the same messages (advisory locks keyed by
# the message keys, taken in one order): without it a receipt could miss the ledger row of a
# send being recorded and be parked as pending just after that record looked for pending ones,
# and stay parked until the cleanup dropped it.
LOCK_RECEIPT_KEYS = text("""
SELECT pg_advisory_xact_lock(:lock_class, h)
FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(CAST(:keys AS text[])) AS k ORDER BY 1) s
""")

# Which of the given ids are in the ledger.
RECEIPT_IDS_KNOWN = text("""
SELECT DISTINCT gateway_message_id FROM campaign_recipients
WHERE gateway_message_id = ANY(CAST(:ids AS text[]))
""")

# Forward only: a sent recipient takes the highest rank of its receipts (:names[rank]) when it
# is above its own; failed ranks above all (nothing follows it). delivered_at and read_at are set
# once, at the first receipt that implies them (a read implies delivered: read can come alone).
APPLY_RECEIPT_PROGRESS = text("""
WITH v AS (
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:ranks AS integer[]),
                         CAST(:ats AS timestamptz[])) AS v(message_id, rank, at)
), best AS (
    SELECT r.campaign_id, r.position, max(v.rank) AS rank,
           min(v.at) FILTER (WHERE v.rank >= 2) AS delivered_at,
           min(v.at) FILTER (WHERE v.rank >= 3) AS read_at
    FROM v JOIN campaign_recipients r ON r.gateway_message_id = v.message_id
    WHERE r.status = 'sent'
    GROUP BY r.campaign_id, r.position
)
UPDATE campaign_recipients r
SET delivery_status = (CAST(:names AS text[]))[b.rank],
    delivered_at = coalesce(r.delivered_at, b.delivered_at),
    read_at = coalesce(r.read_at, b.read_at)
FROM best b
WHERE r.campaign_id = b.campaign_id AND r.position = b.position
  AND b.rank > CASE WHEN r.delivery_status IS NULL THEN 0
                    ELSE coalesce(array_position(CAST(:names AS text[]),
                                                 CAST(r.delivery_status AS text)), 99) END
""")

# Before APPLY_RECEIPT_FAILURES: lock the campaign rows it may count in, in id order. FOR NO KEY
# UPDATE, not the KEY SHARE of record_outcome: this transaction writes the counters itself, and
# two deliveries failing recipients of the same campaigns must take their turns, not deadlock.
# It conflicts with finish_batch's FOR UPDATE like the record does, so a batch is counted
# either wholly before a late failure (which then moves its counts) or after it (and counts it).
LOCK_RECEIPT_CAMPAIGNS = text("""
SELECT s.id FROM campaign_batch_state s
WHERE s.id IN (SELECT r.campaign_id FROM campaign_recipients r
               WHERE r.gateway_message_id = ANY(CAST(:ids AS text[])))
ORDER BY s.id
FOR NO KEY UPDATE
""")

# A late failure (the gateway accepted the send, then gave up): a recipient still at 'sent'
# (no delivered or read receipt: those prove the phone got it) becomes failed with the error.
# If its batch is already counted, the batch's details and the campaign's counters move with it
# (sent - 1, failed + 1) in the same statement; if not, finish_batch counts it as failed.
APPLY_RECEIPT_FAILURES = text("""
WITH v AS (
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:codes AS text[]),
                         CAST(:messages AS text[])) AS v(message_id, code, message)
), hit AS (
    SELECT DISTINCT ON (r.campaign_id, r.position) r.campaign_id, r.position, v.code, v.message
    FROM v JOIN campaign_recipients r ON r.gateway_message_id = v.message_id
    WHERE r.status = 'sent' AND coalesce(r.delivery_status, :sent) = :sent
    ORDER BY r.campaign_id, r.position
), failed AS (
    UPDATE campaign_recipients r
    SET status = 'failed', delivery_status = :failed, error_code = h.code,
        error_message = h.message, updated_at = now()
    FROM hit h
    WHERE r.campaign_id = h.campaign_id AND r.position = h.position AND r.status = 'sent'
    RETURNING r.campaign_id, r.batch_number
), counted AS (
    SELECT f.campaign_id, f.batch_number, count(*) AS n FROM failed f
    WHERE EXISTS (SELECT 1 FROM campaign_batch_details d
                  WHERE d.campaign_id = f.campaign_id AND d.batch_number = f.batch_number)
    GROUP BY f.campaign_id, f.batch_number
), details AS (
    UPDATE campaign_batch_details d
    SET sent_count = d.sent_count - c.n, failed_count = d.failed_count + c.n
    FROM counted c
    WHERE d.campaign_id = c.campaign_id AND d.batch_number = c.batch_number
    RETURNING d.campaign_id, c.n
), moved AS (
    UPDATE campaign_batch_state s
    SET success_count = s.success_count - t.n, failed_count = s.failed_count + t.n,
        updated_at = now()
    FROM (SELECT campaign_id, sum(n) AS n FROM details GROUP BY campaign_id) t
    WHERE s.id = t.campaign_id
    RETURNING s.id
)
SELECT (SELECT count(*) FROM failed) AS failed, (SELECT count(*) FROM moved) AS campaigns
""")

# Receipts of ids not (yet) in the ledger, kept by message key until the send is recorded.
PARK_RECEIPTS = text("""
INSERT INTO campaign_receipts_pending
    (gateway_message_id, status, error_code, error_message, occurred_at)
SELECT * FROM unnest(CAST(:keys AS text[]), CAST(:statuses AS text[]), CAST(:codes AS text[]),
                     CAST(:messages AS text[]), CAST(:ats AS timestamptz[]))
""")

# The parked receipts of messages just recorded (:keys, of :ids as the ledger spells them),
# taken out to be applied in the same transaction; only where the record took (a claim no longer
# held wrote no id, and its receipts stay parked rather than vanish unapplied).
TAKE_PARKED_RECEIPTS = text("""
DELETE FROM campaign_receipts_pending p
USING unnest(CAST(:keys AS text[]), CAST(:ids AS text[])) AS v(key, message_id)
WHERE p.gateway_message_id = v.key
  AND EXISTS (SELECT 1 FROM campaign_recipients r WHERE r.gateway_message_id = v.message_id)
RETURNING p.gateway_message_id, p.status, p.error_code, p.error_message, p.occurred_at
""")

# Parked receipts older than RECEIPT_PENDING_HOURS: their send was never recorded here (another
# system's message on the same number, or a campaign deleted since).
DROP_OLD_PARKED_RECEIPTS = text("""
DELETE FROM campaign_receipts_pending WHERE received_at < now() - make_interval(secs => :seconds)
""")

# Delivered and read counts of a campaign's recipients still counted sent, per sending session
# (a read one counts as delivered too: read_at implies it, and delivered_at is set with it).
DELIVERY_COUNTS = text("""
SELECT session_name, count(*) AS sent,
       count(*) FILTER (WHERE delivered_at IS NOT NULL OR read_at IS NOT NULL) AS delivered,
       count(*) FILTER (WHERE read_at IS NOT NULL) AS read
FROM campaign_recipients
WHERE campaign_id = :campaign_id AND status = 'sent'
GROUP BY session_name
""")

# --- the campaign timeline and the dashboard's figures (campaigns/store/timeline.py) ---
# Events are written by the store in the transaction of the change they record, one INSERT
# each, never per message: a campaign's creation, batches, stops, resumes, lanes and waits.

# One event.
INSERT_EVENT = text("""
INSERT INTO campaign_events (campaign_id, kind, trigger, detail, batch_number, position,
                             session_name)
VALUES (:campaign_id, :kind, :trigger, :detail, :batch_number, :position, :session)
""")

# A recovery, with the batch and first pending recipient it resumes from, read in the same
# transaction as the token swap (one probe of ix_campaign_recipients_open: what the next claim
# takes first).
INSERT_RECOVERED_EVENT = text("""
INSERT INTO campaign_events (campaign_id, kind, trigger, detail, batch_number, position)
SELECT :campaign_id, :kind, :trigger, :detail, first.batch_number, first.position
FROM (SELECT 1) one
LEFT JOIN LATERAL (
    SELECT batch_number, position FROM campaign_recipients
    WHERE campaign_id = :campaign_id AND status = 'pending'
    ORDER BY batch_number, position LIMIT 1
) first ON true
""")

# Lanes put back in the rotation, one event each (:campaign_ids and :sessions side by side).
INSERT_LANE_UP_EVENTS = text("""
INSERT INTO campaign_events (campaign_id, kind, trigger, detail, session_name)
SELECT v.campaign_id, 'lane_up', :trigger, :detail, v.session_name
FROM unnest(CAST(:campaign_ids AS integer[]), CAST(:sessions AS varchar[]))
     AS v(campaign_id, session_name)
""")

# A wait, unless the campaign's latest event already says the same wait (its reason with the
# figures left out: the same wait polled again names a later "until"); any event in between
# (a batch done, a lane down) lets the next wait be told again. One probe of the (campaign, id)
# index, so a campaign polling its capacity writes one event per wait, not one per poll.
INSERT_WAITING_EVENT = text("""
INSERT INTO campaign_events (campaign_id, kind, detail, session_name)
SELECT :campaign_id, 'waiting', :detail, :session
WHERE NOT EXISTS (
    SELECT 1 FROM (
        SELECT kind, detail, session_name FROM campaign_events
        WHERE campaign_id = :campaign_id ORDER BY id DESC LIMIT 1
    ) last
    WHERE last.kind = 'waiting'
      AND last.session_name IS NOT DISTINCT FROM CAST(:session AS varchar)
      AND regexp_replace(last.detail, '[0-9]', '', 'g')
          = regexp_replace(CAST(:detail AS text), '[0-9]', '', 'g')
)
""")

# A campaign's events after an id, oldest first.
LIST_EVENTS = text("""
SELECT * FROM campaign_events
WHERE campaign_id = :campaign_id AND id > :after_id
ORDER BY id LIMIT :limit
""")

# A campaign's messages per minute over the last :minutes: sent and failed by finished_at,
# delivered and read by their receipts' times. Rows are found through
# ix_campaign_recipients_activity (their latest moment is in the span), so the cost follows the
# span's activity, not the campaign's size; each row then counts once per moment in the span.
# The span's start (:since, the first minute) is a value, not now() arithmetic: the planner
# then reads the index's statistics (with now() it assumed a third of the campaign and scanned
# it all: 160 ms on 1,000,000 rows, against a few ms through the index).
ACTIVITY = text("""
SELECT m.minute,
       count(*) FILTER (WHERE m.what = 'sent') AS sent,
       count(*) FILTER (WHERE m.what = 'failed') AS failed,
       count(*) FILTER (WHERE m.what = 'delivered') AS delivered,
       count(*) FILTER (WHERE m.what = 'read') AS read
FROM campaign_recipients r
CROSS JOIN LATERAL (VALUES
    (date_trunc('minute', r.finished_at),
     CASE r.status WHEN 'sent' THEN 'sent' WHEN 'failed' THEN 'failed' END),
    (date_trunc('minute', r.delivered_at), 'delivered'),
    (date_trunc('minute', r.read_at), 'read')
) AS m(minute, what)
WHERE r.campaign_id = :campaign_id AND r.finished_at IS NOT NULL
  AND greatest(r.finished_at, r.delivered_at, r.read_at) >= CAST(:since AS timestamptz)
  AND m.minute >= CAST(:since AS timestamptz) AND m.what IS NOT NULL
GROUP BY m.minute ORDER BY m.minute
""")

# Gateway calls of a campaign recorded in the last :seconds (sent, failed or unknown).
RECENT_SENDS = text("""
SELECT count(*) FROM campaign_recipients
WHERE campaign_id = :campaign_id AND finished_at IS NOT NULL
  AND greatest(finished_at, delivered_at, read_at) >= now() - make_interval(secs => :seconds)
  AND finished_at >= now() - make_interval(secs => :seconds)
  AND status IN ('sent', 'failed', 'unknown')
""")

# Sends of each of :sessions in the rolling day and hour (:day seconds), with the day's unique
# recipients (a Cloud API portfolio's limit counts those), through
# ix_campaign_recipients_sent_by_session: one range per session.
SESSION_SENDS = text("""
SELECT session_name,
       count(*) AS day,
       count(*) FILTER (WHERE finished_at > now() - make_interval(secs => :day / 24)) AS hour,
       count(DISTINCT phone) AS unique_day
FROM campaign_recipients
WHERE status = 'sent' AND session_name = ANY(CAST(:sessions AS varchar[]))
  AND finished_at > now() - make_interval(secs => :day)
GROUP BY session_name
""")

# The stops in force per session: down lanes of unfinished campaigns, and interrupted campaigns
# as a whole (their first session), by kind, with the latest end of a limited one and a reason;
# and how many unfinished campaigns have the session in their pool.
SESSION_STOPS = text("""
SELECT l.session_name, l.stop_kind::text AS kind, max(l.resume_at) AS until,
       min(l.reason) AS reason, 0 AS campaigns
FROM campaign_lanes l JOIN campaign_batch_state s ON s.id = l.campaign_id
WHERE l.state = 'down' AND s.status IN ('running', 'interrupted')
GROUP BY l.session_name, l.stop_kind
UNION ALL
SELECT s.session_name, s.interrupt_kind::text, max(s.resume_at), min(s.interrupt_reason), 0
FROM campaign_batch_state s
WHERE s.status = 'interrupted' AND s.interrupt_kind IS NOT NULL
GROUP BY s.session_name, s.interrupt_kind
UNION ALL
SELECT l.session_name, NULL, NULL, NULL, count(*)
FROM campaign_lanes l JOIN campaign_batch_state s ON s.id = l.campaign_id
WHERE s.status NOT IN ('completed', 'failed', 'cancelled')
GROUP BY l.session_name
""")
