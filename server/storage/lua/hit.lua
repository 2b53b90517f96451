-- Count one hit in a fixed window; the counter always gets its TTL (same step).
-- KEYS: 1 counter. ARGV: 1 window ms. Returns the count in this window.
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
