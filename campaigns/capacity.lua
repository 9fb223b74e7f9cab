-- Sender capacity: caps per session (rolling day and hour) and Meta's messaging limit per
-- business portfolio (unique recipients per rolling day), across every worker and campaign.
-- One call takes capacity for a group of sends of one session, in order, all or a prefix.
--
-- KEYS[1] <prefix>cap:<session>        ZSET  send id -> when it was taken (seconds, Redis clock)
-- KEYS[2] cc:cap:<session>:built    STRING present once KEYS[1] was rebuilt from the ledger
-- KEYS[3] cc:portfolio:<p>          ZSET  phone -> when last messaged (or unused: no tier)
-- KEYS[4] cc:portfolio:<p>:built    STRING present once KEYS[3] was rebuilt from the ledger
--
-- ARGV[1] day (seconds; 86400 unless time is made fast)
-- ARGV[2] cap per day   (-1: none)     ARGV[3] cap per hour (-1: none)
-- ARGV[4] portfolio tier: unique recipients per day (-1: none)
-- ARGV[5] n, then n pairs: send id, phone
--
-- Reply: {'rebuild', which} when a built marker is missing (the caller loads the last day of
-- sends from PostgreSQL with op 'load' and asks again); else {granted, wait, why}: the first
-- `granted` sends of the group are taken; when granted < n, `wait` is the seconds until the
-- next one could be (why: 'day', 'hour' or 'portfolio').
--
-- op 'load' (ARGV[1] = 'load', ARGV[2] = day, ARGV[3] = which (session|portfolio), then
-- pairs: score, member): add the ledger's sends and set the marker (it expires with the
-- data it vouches for, a day later, so a long-idle session is simply rebuilt again).
--
-- op 'give' (ARGV[1] = 'give', then send ids): a taken send that never left gives its place
-- back (the portfolio keeps the phone: the recipient may still be messaged within the day).

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6

if ARGV[1] == 'load' then
  local day = tonumber(ARGV[2])
  local key, marker = KEYS[1], KEYS[2]
  if ARGV[3] == 'portfolio' then key, marker = KEYS[3], KEYS[4] end
  for i = 4, #ARGV, 2 do
    local score = tonumber(ARGV[i])
    local old = redis.call('ZSCORE', key, ARGV[i + 1])
    if not old or tonumber(old) < score then redis.call('ZADD', key, score, ARGV[i + 1]) end
  end
  redis.call('SET', marker, '1', 'EX', math.ceil(day) + 60)
  redis.call('EXPIRE', key, math.ceil(day) + 60)
  return 'ok'
end

if ARGV[1] == 'give' then
  for i = 2, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
  return 'ok'
end

-- A send is counted from the moment its capacity is taken, a few milliseconds before it
-- reaches the gateway; what counts is what WhatsApp sees, so a send leaves the rolling day
-- (and hour) a margin late: a thousandth of the span, at least 0.1 s.
local span = tonumber(ARGV[1])
local day = span + math.max(span / 1000, 0.1)
local hour = span / 24 + math.max(span / 24000, 0.1)
local cap_day, cap_hour, tier = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local counted = cap_day >= 0 or cap_hour >= 0
if counted and redis.call('EXISTS', KEYS[2]) == 0 then return {'rebuild', 'session'} end
if tier >= 0 and redis.call('EXISTS', KEYS[4]) == 0 then return {'rebuild', 'portfolio'} end

local sends = 0
if counted then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - day)
  sends = redis.call('ZCARD', KEYS[1])
end
local unique = 0
if tier >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - day)
  unique = redis.call('ZCARD', KEYS[3])
end

-- seconds until the oldest entry of `key` at 0-based rank `rank` leaves a window of `span`
local function until_leaves(key, rank, span)
  local entry = redis.call('ZRANGE', key, rank, rank, 'WITHSCORES')
  if #entry < 2 then return 1.0 end
  return math.max(tonumber(entry[2]) + span - now, 0.001)
end

local granted = 0
for i = 1, n do
  local id, phone = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  if cap_day >= 0 and sends >= cap_day then
    return {granted, tostring(until_leaves(KEYS[1], sends - cap_day, day)), 'day'}
  end
  if cap_hour >= 0 then
    local older = redis.call('ZCOUNT', KEYS[1], '-inf', now - hour)
    local in_hour = sends - older
    if in_hour >= cap_hour then
      return {granted, tostring(until_leaves(KEYS[1], older + in_hour - cap_hour, hour)), 'hour'}
    end
  end
  if tier >= 0 then
    local seen = redis.call('ZSCORE', KEYS[3], phone)
    if not seen then
      if unique >= tier then
        return {granted, tostring(until_leaves(KEYS[3], unique - tier, day)), 'portfolio'}
      end
      unique = unique + 1
    end
    redis.call('ZADD', KEYS[3], now, phone)
    redis.call('EXPIRE', KEYS[3], math.ceil(day) + 60)
    redis.call('EXPIRE', KEYS[4], math.ceil(day) + 60)
  end
  if counted then
    redis.call('ZADD', KEYS[1], now, id)
    sends = sends + 1
    redis.call('EXPIRE', KEYS[1], math.ceil(day) + 60)
    redis.call('EXPIRE', KEYS[2], math.ceil(day) + 60)
  end
  granted = granted + 1
end
return {granted, '0', ''}
