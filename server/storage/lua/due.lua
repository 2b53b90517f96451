-- Pop the entries of a schedule zset whose time has come, so that exactly one
-- process handles each. KEYS: 1 zset. ARGV: 1 now ms, 2 limit.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
