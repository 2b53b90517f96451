-- Claim the entries of a schedule zset whose time has come: each is pushed
-- ARGV[3] ms into the future (so exactly one process takes it now) and comes
-- back by itself if the claimer fails before ``done.lua`` removes it.
-- KEYS: 1 zset. ARGV: 1 now ms, 2 limit, 3 retry after ms.
-- Returns: member, claim score, member, claim score, ...
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local claim = tonumber(ARGV[1]) + tonumber(ARGV[3])
local out = {}
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', claim, member)
  out[#out + 1] = member
  out[#out + 1] = tostring(claim)
end
return out
