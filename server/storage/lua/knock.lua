-- Store a knock, then announce it: one atomic step (DESIGN.md, Data and scale).
-- KEYS: 1 host hash, 2 queue zset, 3 guest hash, 4 event counter, 5 presence hash,
--       6 devices zset, 7 this minute's knock counter of the link, 8 block set,
--       9 allow set, 10 this minute's knock counter of the client address on the link,
--       11 block-unverified set, 12 deny cool-down zset (identity -> until ms),
--       13 recent knocks zset (guest -> ms, the raid window), 14 raid hash
-- ARGV: 1 guest id, 2 guest info (msgpack map), 3 resume secret, 4 now ms,
--       5 channel, 6 publish command, 7 connection id, 8 email (lowercase or ""),
--       9 email domain, 10 verified "1"/"0", 11 guest ttl ms, 12 per-link limit/min,
--       13 per-address limit/min (0 = off), 14 webhook outbox stream key or "" (off),
--       15 identity (the deny cool-down's: "v:<email>" or "a:<address>"),
--       16 deny cool-down ms (0 = off), 17 raid threshold knocks/window (0 = off),
--       18 raid autolock "1"/"0", 19 maximum wait ms (0 = off), 20 the outcome a
--       time_out gives this guest (msgpack; stored when ARGV 19 > 0),
--       21 the host's knocks channel
-- The knock goes out on the knocks channel, which only processes with a device of
-- the host follow; while a device of an older Foyer is online (its devices-zset
-- member lacks the LISTENER prefix, keys.KNOCK_LISTENER) it goes out on the events
-- channel instead, which every process of the host follows.
-- Publishes: [raid (0, count, since, until, autolock)] knock (ev, position, host_state,
--   info): a raid notice goes first, so a device hears of the raid before the knock
--   that made it one.
-- Returns: {verdict[, position, ev, devices online, raid started 1/0]}; "cooling":
--   this identity was denied within the cool-down.
-- Outbox (ARGV 14 set): guest.knocked (guest, position, card)
-- Idempotent: a knock whose guest exists with the same resume secret ran already
-- (its reply was lost and the Batcher sent it again): it answers that guest's place
-- and changes and publishes nothing.
__WRITE_POLICY__
local INITIAL = __INITIAL__
local function over(key, limit)
  if limit <= 0 then return false end
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, 61000) end
  return n > limit
end
local p = redis.call('HMGET', KEYS[1], 'policy_v', 'locked', 'bypass')
if not p[1] and redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown_link'} end
local seen = redis.call('HMGET', KEYS[3], 'resume', 'score')
if seen[1] == ARGV[3] then
  local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
  local online = redis.call('ZCOUNT', KEYS[6], ARGV[4], '+inf')
  return {'ok', rank and rank + 1 or 1, tonumber(seen[2]), online, 0}
end
if over(KEYS[10], tonumber(ARGV[13])) then return {'rate_limited'} end
if not p[1] then
  -- A host written before the policy fields existed: derive them once.
  local ok, s = pcall(cjson.decode, redis.call('HGET', KEYS[1], 'settings') or '{}')
  p = write_policy(KEYS[1], KEYS[8], KEYS[9], KEYS[11], ok and type(s) == 'table' and s.policy or {})
end
local email, domain = ARGV[8], ARGV[9]
local function listed(key)
  if email == '' then return false end
  return redis.call('SISMEMBER', key, email) == 1 or redis.call('SISMEMBER', key, domain) == 1
    or redis.call('SISMEMBER', key, '@' .. domain) == 1
end
local verified = ARGV[10] == '1'
-- A block made on an unverified guest stops only unverified knocks: anyone can
-- type someone else's address, and that must not lock the real owner out.
if listed(KEYS[8]) or (not verified and listed(KEYS[11])) then return {'blocked'} end
local now = tonumber(ARGV[4])
-- Lapsed entries are pruned where a deny adds one (transition.lua): here the
-- entry's own time decides, one call instead of two per knock (issue 11).
local cooling = redis.call('ZSCORE', KEYS[12], ARGV[15])
if cooling and tonumber(cooling) > now then return {'cooling'} end
if p[2] == '1' then return {'locked'} end
if over(KEYS[7], tonumber(ARGV[12])) then return {'rate_limited'} end
if p[3] == 'everyone' or (p[3] == 'verified' and verified) or (verified and listed(KEYS[9])) then
  return {'bypass'}
end
local ev = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[3], 'info', ARGV[2], 'state', INITIAL, 'resume', ARGV[3],
           'score', ev, 'conn', ARGV[7], 'who', ARGV[15], 'cool', ARGV[16])
local max_wait = tonumber(ARGV[19])
if max_wait > 0 then
  redis.call('HSET', KEYS[3], 'wait_until', now + max_wait, __TIMEOUT_FIELD__, ARGV[20])
end
redis.call('PEXPIRE', KEYS[3], ARGV[11])
redis.call('ZADD', KEYS[2], ev, ARGV[1])
local position = redis.call('ZCARD', KEYS[2])
local live = redis.call('ZRANGEBYSCORE', KEYS[6], ARGV[4], '+inf')
local online = #live
local knocks, LISTENER = ARGV[21], __KNOCK_LISTENER__
for _, device in ipairs(live) do
  if string.sub(device, 1, #LISTENER) ~= LISTENER then
    knocks = ARGV[5]
    break
  end
end
local state = 'away'
if online > 0 then state = redis.call('HGET', KEYS[5], 'state') or 'available' end
-- Raid protection: count the knocks of the last window (sliding), atomically with
-- the knock; a host with raids off (threshold 0) pays nothing for it.
local WINDOW, EVERY = __RAID_WINDOW_MS__, __RAID_NOTICE_EVERY_MS__
local recent, threshold, started = 0, tonumber(ARGV[17]), 0
if threshold > 0 then
  redis.call('ZADD', KEYS[13], now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[13], '-inf', now - WINDOW)
  redis.call('PEXPIRE', KEYS[13], WINDOW)
  recent = redis.call('ZCARD', KEYS[13])
end
if threshold > 0 and recent > threshold then
  local raid = redis.call('HMGET', KEYS[14], 'since', 'sent')
  if not raid[1] then started = 1 end
  local since = tonumber(raid[1] or now)
  if started == 1 or now - tonumber(raid[2] or '0') >= EVERY then
    redis.call('HSET', KEYS[14], 'since', since, 'sent', now)
    redis.call(ARGV[6], ARGV[5], cmsgpack.pack(K.Raid, 0, recent, since, now + WINDOW,
                                               ARGV[18] == '1'))
  end
  redis.call('PEXPIRE', KEYS[14], WINDOW)
end
redis.call(ARGV[6], knocks, cmsgpack.pack(K.Knocked, ev, position, state) .. ARGV[2])
if ARGV[14] ~= '' then
  redis.call('XADD', ARGV[14], 'MAXLEN', '~', __OUTBOX_MAX__, '*', 'type', H.KNOCKED,
             'guest', ARGV[1], 'position', position, 'card', ARGV[2])
end
return {'ok', position, ev, online, started}
