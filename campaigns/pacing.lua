-- Session pacing (invariant 7): two consecutive sends of one session are never closer than
-- min_interval, across every worker, process and campaign; turns go to the lanes waiting now,
-- in arrival order (design.md, "Sending lanes"). Used by campaigns/pacing.py.
--
-- DATA MODEL: four keys per session (prefix campaigns.constants.PACING_KEY_PREFIX), always
-- passed together so each operation below is atomic.
--
--   KEYS[1] cc:pacing:<s>          HASH
--     call    When the last send was granted (Redis clock, seconds, "%.6f"). THE safety bound:
--             no grant before call + min_interval + guard.
--     hold    No grant before this time (the gateway throttled: every waiter backs off).
--     due     The turn time of the current head of the queue: call + the head's random gap,
--     due_by  fixed once for that head (due_by) so that its continuation after a deferral, or
--             its next poll, meets the same turn. Cleared by every grant.
--     next    ``rate`` profiles: the earliest time the session's next send may leave; slots are
--             1/rate apart and booked at most ``burst`` slots ahead (both passed by the caller).
--     run     The run_id of the Redis server that wrote this state (INFO server).
--     epoch   Incremented by every grant; returned to the workers, which remember the highest
--             they saw per session.
--   KEYS[2] cc:pacing:<s>:q        ZSET  waiter -> arrival (Redis clock; a re-take of a stale
--                                        grant arrives "before everyone", see retake)
--   KEYS[3] cc:pacing:<s>:present  ZSET  waiter -> lease: present while lease >= now
--   KEYS[4] cc:pacing:<s>:forget   ZSET  waiter -> when its entry is dropped for good
--   TTL: PACING_STATE_TTL_S after every write, plus however far ahead the state still
--        constrains (hold, due); an abandoned session's keys go away by themselves.
--
-- FAIR TURNS. A waiter is a lane's wait for one send (its member is the lane's id). It joins
-- the queue by asking ("turn"), renews its lease at every ask, and is granted only when it is
-- the head (the earliest arrival among present waiters) and now >= max(due, hold). A waiter
-- that stops waiting (budget spent, pause, cancel) leaves: it is no longer present, so the next
-- waiter is head at once; its entry is kept (absent) until "forget", so a continuation of the
-- same lane that asks again within PACING_HANDOFF_S keeps its arrival and goes next, but the
-- turn was not held for it in between. A waiter that crashed stops renewing: absent after its
-- lease (PACING_LEASE_S after its last ask; for the head, after its turn, which it sleeps
-- until), forgotten PACING_HANDOFF_S later. No reservation outlives its waiter by more than
-- its lease, and nothing ever moves a turn further out than one gap after the last send (the
-- old "next free slot" ran ahead of the clock when waits were cancelled).
--
-- OLDER COPIES. Redis may come back with state older than the truth (AOF everysec after a
-- crash, an RDB snapshot, a promoted lagging replica, a restored backup) that looks valid: an
-- old 'call' would let the next send go at once. Two checks, either one triggers a rebuild:
--   1. 'run' differs from this server's run_id. run_id changes on every start of a server and
--      differs between a master and its replicas, so any restart, failover or snapshot load is
--      seen (a clean restart too: we cannot tell, so it costs one interval, like a loss).
--   2. 'epoch' is below the highest epoch the asking worker has seen: the same server went
--      back in time (DEBUG RELOAD, a RESTORE of an old dump).
-- Missing state (new session, FLUSHALL, restart without persistence, expiry) is rebuilt too.
-- A rebuild needs the session's last send recorded in PostgreSQL: the script answers
-- {'rebuild'} without changing anything, and the worker asks again with that time as
-- <floor> (seconds since the epoch, '0' when unknown). Then call = max(now, floor): a send may
-- be in flight that PostgreSQL has not recorded yet, so the next grant waits a full interval
-- from now, or from PostgreSQL's last send when its clock runs ahead (capped at SKEW_CAP_S).
-- The rate schedule restarts a full slot after 'call' and any due is dropped.
--
-- CALL: EVALSHA <sha> 4 <keys...> <op> <ttl_s> <known_epoch> <floor|''> <op args...>
--   turn    <member> <gap_s> <spacing_s> <lease_s> <handoff_s> <budget_s|''> <arrival|''>
--           -> {granted, wait, now, due, epoch, position}
--           granted 1 (send now), 0 (ask again within wait), 2 (deferred: the turn lies beyond
--           budget_s; the waiter left and keeps its place until the turn + handoff)
--           spacing = min_interval + guard; gap = the waiter's random gap in [min, max]
--   leave   <member> <handoff_s>                    -> {1}
--   retake  <granted_at>                            -> {granted, wait, now, epoch}
--           still the last grant: call moves to now and the send goes (the late request
--           keeps the gap to the previous send and pushes the next one out)
--   hold    <seconds>                               -> {hold_until}
--   rate    <n> <rate_per_s> <burst>       -> {granted, wait, now, epoch, first, spacing}
--           granted slots (0 to n) at first + i * spacing; 0: ask again after wait
--   Any op but hold and leave may answer {'rebuild'} (see OLDER COPIES).
--
-- All times are Redis TIME: worker clocks may disagree, this server's clock is the only one.
-- Numbers go back as strings because Redis truncates Lua numbers in replies to integers.

if redis.replicate_commands then
  -- Redis < 5 replicates scripts verbatim and forbids writes after TIME; later versions
  -- replicate effects already and keep this as a no-op.
  redis.replicate_commands()
end

local state, queue, present, forget = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op = ARGV[1]
local ttl = tonumber(ARGV[2])
local known = tonumber(ARGV[3]) or 0
local floor = ARGV[4]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local SKEW_CAP_S = 5
local SCAN = 64

local function get(field)
  local value = redis.call('HGET', state, field)
  if value then
    return tonumber(value)
  end
  return nil
end

local function fmt(seconds)
  return string.format('%.6f', seconds)
end

local function keep_until(latest)
  -- Every key must outlive the furthest moment it still constrains, then TTL more.
  local ms = string.format('%d', math.ceil((math.max(latest - now, 0) + ttl) * 1000))
  for _, key in ipairs(KEYS) do
    redis.call('PEXPIRE', key, ms)
  end
end

local function run_id()
  -- pcall: a server with INFO renamed away keeps the epoch check only
  local ok, info = pcall(redis.call, 'INFO', 'server')
  if ok and type(info) == 'string' then
    return string.match(info, 'run_id:(%x+)') or ''
  end
  return ''
end

if op == 'hold' then
  local hold = math.max(get('hold') or 0, now + tonumber(ARGV[5]))
  redis.call('HSET', state, 'hold', fmt(hold))
  keep_until(math.max(hold, get('due') or 0))
  return {fmt(hold)}
end

local function drop(members)
  if #members > 0 then
    redis.call('ZREM', queue, unpack(members))
    redis.call('ZREM', present, unpack(members))
    redis.call('ZREM', forget, unpack(members))
  end
end

if op == 'leave' then
  local member = ARGV[5]
  if redis.call('ZSCORE', queue, member) then
    -- absent now (the next waiter is head at once), remembered for a continuation
    redis.call('ZADD', present, fmt(now - 0.000001), member)
    redis.call('ZADD', forget, fmt(now + tonumber(ARGV[6])), member)
  end
  return {1}
end

-- Every other op grants: the state must be this lineage's, or be rebuilt first.
local server = run_id()
local epoch = get('epoch') or 0
if redis.call('HGET', state, 'run') ~= server or get('call') == nil or epoch < known then
  if floor == '' then
    return {'rebuild'}
  end
  local call = math.max(now, math.min(tonumber(floor) or 0, now + SKEW_CAP_S))
  epoch = math.max(epoch, known) + 1
  redis.call('HSET', state, 'call', fmt(call), 'run', server, 'epoch', epoch)
  redis.call('HDEL', state, 'due', 'due_by', 'next')
end

local call = get('call')
if call > now + SKEW_CAP_S then
  -- The server clock stepped back further than a rebuild floor may lie ahead. Real time since
  -- that grant is >= 0, so counting it from now keeps the gap without stalling the session
  -- for the size of the step (a smaller step costs at most SKEW_CAP_S of waiting).
  call = now
  redis.call('HSET', state, 'call', fmt(now))
end
local hold = get('hold') or 0

local function grant()
  redis.call('HSET', state, 'call', fmt(now))
  redis.call('HDEL', state, 'due', 'due_by')
  epoch = redis.call('HINCRBY', state, 'epoch', 1)
end

if op == 'retake' then
  if redis.call('HGET', state, 'call') == ARGV[5] and now >= hold then
    grant()
    keep_until(math.max(hold, now))
    return {1, fmt(0), fmt(now), epoch}
  end
  return {0, fmt(math.max(hold - now, 0)), fmt(now), epoch}
end

if op == 'rate' then
  -- A virtual schedule (GCRA): 'next' is the earliest moment the session's next send may
  -- leave; slots are 1/rate apart and may be booked at most burst slots ahead of now. The
  -- caller sends slot i at first + i * spacing, so sends leave evenly spaced: never more than
  -- rate in any one-second window (a bucket's burst would put burst + rate there).
  local n, rate, burst = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local spacing = 1 / rate
  local horizon = burst * spacing
  -- a lost state has no 'next': the first slot is a full spacing after the rebuilt 'call'
  local first = math.max(get('next') or (call + spacing), now, hold)
  -- (a thousandth of a slot of slack: epoch seconds in doubles lose the last digits)
  local room = math.floor((now + horizon - first) / spacing + 0.001)
  local take = math.min(n, room)
  if take < 1 then
    keep_until(math.max(hold, first))
    local wait = math.max(first + spacing - horizon - now, 0.0005)
    return {0, fmt(wait), fmt(now), epoch, fmt(first), fmt(spacing)}
  end
  redis.call('HSET', state, 'next', fmt(first + take * spacing), 'call', fmt(now))
  epoch = redis.call('HINCRBY', state, 'epoch', 1)
  keep_until(math.max(hold, first + take * spacing))
  return {take, fmt(0), fmt(now), epoch, fmt(first), fmt(spacing)}
end

if op ~= 'turn' then
  return redis.error_reply('pacing.lua: unknown operation ' .. tostring(op))
end

local member = ARGV[5]
local gap, spacing = tonumber(ARGV[6]), tonumber(ARGV[7])
local lease, handoff = tonumber(ARGV[8]), tonumber(ARGV[9])
local budget = tonumber(ARGV[10])
local arrival = tonumber(ARGV[11]) or now

drop(redis.call('ZRANGEBYSCORE', forget, '-inf', fmt(now), 'LIMIT', 0, SCAN))
redis.call('ZADD', queue, 'NX', fmt(arrival), member)
redis.call('ZADD', present, fmt(now + lease), member)
redis.call('ZADD', forget, fmt(now + lease + handoff), member)

-- The head is the earliest present arrival; position counts present waiters up to member.
local head, position, ahead, start = nil, nil, 0, 0
while position == nil do
  local ids = redis.call('ZRANGE', queue, start, start + SCAN - 1)
  if #ids == 0 then
    break
  end
  for _, id in ipairs(ids) do
    local until_ = redis.call('ZSCORE', present, id)
    if until_ and tonumber(until_) >= now then
      head = head or id
      if id == member then
        position = ahead + 1
        break
      end
      ahead = ahead + 1
    end
  end
  -- beyond the first SCAN the exact place matters little: it only spaces the polls
  if head ~= nil and ahead >= SCAN then
    position = ahead + 1
  end
  start = start + SCAN
end
position = position or (ahead + 1)

local due = nil
if redis.call('HGET', state, 'due_by') == head then
  due = get('due')
end

if head == member then
  if due == nil then
    due = call + math.max(gap, spacing)
    redis.call('HSET', state, 'due', fmt(due), 'due_by', member)
  end
  local at = math.max(due, hold)
  if now >= at then
    grant()
    drop({member})
    keep_until(math.max(hold, now))
    return {1, fmt(0), fmt(now), fmt(at), epoch, 1}
  end
  keep_until(at)
  if budget ~= nil and at - now > budget then
    -- The turn lies beyond the waiter's budget: give it back now, keep the place (and the
    -- due) for the continuation that comes back for it.
    redis.call('ZADD', present, fmt(now - 0.000001), member)
    redis.call('ZADD', forget, fmt(at + handoff), member)
    return {2, fmt(at - now), fmt(now), fmt(at), epoch, 1}
  end
  -- The head sleeps until its turn and asks once more: its lease covers the sleep (everyone
  -- behind waits for that turn anyway), so a lone lane costs two calls per send, not a poll.
  redis.call('ZADD', present, fmt(at + lease), member)
  redis.call('ZADD', forget, fmt(at + lease + handoff), member)
  return {0, fmt(at - now), fmt(now), fmt(at), epoch, 1}
end

-- Not the head: when to ask again. The head goes at its due (or, not fixed yet, no earlier
-- than the last send and the hold), each waiter ahead at least one spacing later.
local base = math.max(due or call, hold)
keep_until(math.max(base, hold))
local hint = math.max(base - now, 0) + spacing * (position - 1)
return {0, fmt(hint), fmt(now), fmt(0), epoch, position}
