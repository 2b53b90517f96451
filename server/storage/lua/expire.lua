-- Expire a guest whose resume window has passed (only if it is still away and
-- its deadline has come: a guest that came back and dropped again has a new one).
-- KEYS: 1 queue zset, 2 event counter, 3 guest hash
-- ARGV: 1 guest id, 2 now ms, 3 channel, 4 publish command
local g = redis.call('HMGET', KEYS[3], 'state', 'deadline', 'score')
if g[1] ~= 'away' or not g[2] or tonumber(g[2]) > tonumber(ARGV[2]) then return 0 end
local new = (__TRANSITIONS__)['away']['expire']
redis.call('HSET', KEYS[3], 'state', new)
redis.call('ZREM', KEYS[1], ARGV[1])
local ev = redis.call('INCR', KEYS[2])
redis.call(ARGV[4], ARGV[3], cmsgpack.pack('left', ev, ARGV[1], tonumber(g[3]), 'expired'))
return 1
