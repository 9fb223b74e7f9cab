-- Session pacing (invariant 7): two consecutive sends of one session are never closer than
-- min_interval, across every worker, process and campaign. Used by campaigns/pacing.py.
--
-- DATA MODEL: one key per session, so each operation below is atomic on its own.
--
--   cc:pacing:<session>   HASH   (prefix: campaigns.constants.PACING_KEY_PREFIX)
--     TTL: PACING_STATE_TTL_S (1 day) after every write, plus however far in the future the
--          slot or hold still lies; an abandoned session's key goes away by itself.
--     slot  Last send slot handed out by "reserve" (Redis clock, seconds, "%.6f"). The next
--           reservation gets max(now, max(slot, call) + gap, hold). This gives the human-like
--           random spacing and orders many waiting workers; it is NOT the safety bound (a
--           worker may be late after its slot).
--     call  When the last send was allowed by "acquire" (Redis clock, seconds). THE safety
--           bound: no grant before call + min_interval + guard. Missing means the state was lost
--           (FLUSHALL, restart without persistence, expiry) or the session is new: we cannot
--           know whether a send happened a millisecond ago, so "acquire" seeds call = now and
--           answers "wait a full interval".
--     hold  No slot and no grant before this time (the gateway throttled: everyone backs off).
--
-- CALL: EVALSHA <sha> 1 <key> <op> <arg> <ttl_s>
--   reserve <gap_s>       -> {slot, wait}          gap drawn by the caller in [min, max]
--   acquire <spacing_s>   -> {granted, wait, now}  spacing = min_interval + guard; granted 1|0
--   hold    <seconds>     -> {hold_until}
--
-- All times are Redis TIME: worker clocks may disagree, this server's clock is the only one.
-- Numbers go back as strings because Redis truncates Lua numbers in replies to integers.

if redis.replicate_commands then
  -- Redis < 5 replicates scripts verbatim and forbids writes after TIME; later versions
  -- replicate effects already and keep this as a no-op.
  redis.replicate_commands()
end

local key = KEYS[1]
local op = ARGV[1]
local arg = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local function get(field)
  local value = redis.call('HGET', key, field)
  if value then
    return tonumber(value)
  end
  return nil
end

local function fmt(seconds)
  return string.format('%.6f', seconds)
end

local function keep_until(latest)
  -- The key must outlive the furthest moment it still constrains, then TTL more.
  local ms = (math.max(latest - now, 0) + ttl) * 1000
  redis.call('PEXPIRE', key, string.format('%d', math.ceil(ms)))
end

if op == 'reserve' then
  local hold = get('hold') or 0
  local slot = get('slot') or 0
  -- A future 'call' is a clock that stepped back; counting it as 'now' never shortens a gap.
  local call = math.min(get('call') or 0, now)
  local base = math.max(slot, call)
  local next_slot = math.max(now, hold)
  if base > 0 then
    next_slot = math.max(next_slot, base + arg)
  end
  redis.call('HSET', key, 'slot', fmt(next_slot))
  keep_until(math.max(next_slot, hold))
  return {fmt(next_slot), fmt(next_slot - now)}
end

if op == 'acquire' then
  local call = get('call')
  local hold = get('hold') or 0
  local latest = math.max(get('slot') or 0, hold, now)
  if call == nil then
    -- State lost or new session. Seeding at 'now' is strictly safer than rebuilding from
    -- PostgreSQL's last send time: a send may be in flight (allowed, not yet recorded), so
    -- the database can only be older than the truth, never newer.
    redis.call('HSET', key, 'call', fmt(now))
    keep_until(latest)
    return {0, fmt(math.max(arg, hold - now)), fmt(now)}
  end
  if call > now then
    -- The server clock stepped back. Real time since that grant is >= 0, so counting it
    -- from now keeps the gap and avoids stalling the session for the size of the step.
    call = now
    redis.call('HSET', key, 'call', fmt(now))
  end
  local earliest = math.max(call + arg, hold)
  if now >= earliest then
    redis.call('HSET', key, 'call', fmt(now))
    keep_until(latest)
    return {1, fmt(0), fmt(now)}
  end
  keep_until(latest)
  return {0, fmt(earliest - now), fmt(now)}
end

if op == 'hold' then
  local hold = math.max(get('hold') or 0, now + arg)
  redis.call('HSET', key, 'hold', fmt(hold))
  keep_until(math.max(hold, get('slot') or 0))
  return {fmt(hold)}
end

return redis.error_reply('pacing.lua: unknown operation ' .. tostring(op))
