-- Compare-and-set of a host's settings (works on a Cluster, unlike WATCH across
-- a pool): write only if nobody changed them since they were read.
-- KEYS: 1 host hash. ARGV: 1 settings read, 2 new settings, 3.. field/value pairs
local current = redis.call('HGET', KEYS[1], 'settings')
if not current then return -1 end
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'settings', ARGV[2])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
