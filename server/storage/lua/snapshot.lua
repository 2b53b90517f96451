-- A host's whole lobby in one round trip: what a welcome and a recovery read.
-- KEYS: 1 host hash, 2 queue zset, 3 event counter, 4 presence hash, 5 devices zset
-- ARGV: 1 now ms, 2 guest key prefix, 3 how many guests' infos to return (0: all),
--       4.. guests whose state and outcome to report (those a process knew of
--       that may have left unseen)
-- Returns: {host hash as field/value list (empty: no host), counter, presence state,
--   presence meeting, devices online, {info, state, held, ...} oldest first (up to ARGV 3),
--   {state, outcome, ...} for ARGV 4.., every queued guest id oldest first}
local host = redis.call('HGETALL', KEYS[1])
local counter = tonumber(redis.call('GET', KEYS[3]) or '0')
local p = redis.call('HMGET', KEYS[4], 'state', 'meeting')
local online = redis.call('ZCOUNT', KEYS[5], ARGV[1], '+inf')
local limit = tonumber(ARGV[3])
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
local queue = {}
for i, gid in ipairs(ids) do
  if limit > 0 and i > limit then break end
  local g = redis.call('HMGET', ARGV[2] .. gid, 'info', 'state', 'held')
  if g[1] then
    queue[#queue + 1] = g[1]
    queue[#queue + 1] = g[2] or ''
    queue[#queue + 1] = g[3] or ''
  end
end
local known = {}
for i = 4, #ARGV do
  local g = redis.call('HMGET', ARGV[2] .. ARGV[i], 'state', 'outcome')
  known[#known + 1] = g[1] or ''
  known[#known + 1] = g[2] or ''
end
return {host, counter, p[1] or '', p[2] or '', online, queue, known, ids}
