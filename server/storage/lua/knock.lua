-- Store a knock, then announce it: one atomic step (DESIGN.md, Data and scale).
-- KEYS: 1 host hash, 2 queue zset, 3 guest hash, 4 event counter, 5 presence hash,
--       6 devices zset, 7 this minute's knock counter of the link
-- ARGV: 1 guest id, 2 guest info (msgpack map), 3 resume secret, 4 now ms,
--       5 channel, 6 publish command, 7 connection id, 8 email (lowercase or ""),
--       9 email domain, 10 verified "1"/"0", 11 guest ttl ms, 12 per-link limit/min (0 = off)
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown_link'} end
local policy = {}
local raw = redis.call('HGET', KEYS[1], 'settings')
if raw then
  local ok, s = pcall(cjson.decode, raw)
  if ok and type(s) == 'table' and type(s.policy) == 'table' then policy = s.policy end
end
local email, domain = ARGV[8], ARGV[9]
local function listed(list)
  if email == '' or type(list) ~= 'table' then return false end
  for _, v in ipairs(list) do
    if type(v) == 'string' then
      local x = string.lower(v)
      if x == email or x == domain or x == '@' .. domain then return true end
    end
  end
  return false
end
if listed(policy.block) then return {'blocked'} end
if policy.locked == true then return {'locked'} end
local limit = tonumber(ARGV[12])
if limit > 0 then
  local n = redis.call('INCR', KEYS[7])
  if n == 1 then redis.call('PEXPIRE', KEYS[7], 61000) end
  if n > limit then return {'rate_limited'} end
end
local verified = ARGV[10] == '1'
if policy.bypass == 'everyone' or (policy.bypass == 'verified' and verified)
   or (verified and listed(policy.allow)) then
  return {'bypass'}
end
local ev = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[3], 'info', ARGV[2], 'state', 'waiting', 'resume', ARGV[3],
           'score', ev, 'conn', ARGV[7])
redis.call('PEXPIRE', KEYS[3], ARGV[11])
redis.call('ZADD', KEYS[2], ev, ARGV[1])
local position = redis.call('ZCARD', KEYS[2])
local online = redis.call('ZCOUNT', KEYS[6], ARGV[4], '+inf')
local state = 'away'
if online > 0 then state = redis.call('HGET', KEYS[5], 'state') or 'available' end
redis.call(ARGV[6], ARGV[5],
  cmsgpack.pack('knock', ev, position, state) .. ARGV[2])
return {'ok', position, ev, online}
