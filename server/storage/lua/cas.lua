-- Compare-and-set of a host's settings (works on a Cluster, unlike WATCH across
-- a pool): write only if nobody changed them since they were read; keep the
-- policy the knock script reads (lock, bypass, block and allow sets) in step,
-- and tell every device, in the same atomic step.
-- KEYS: 1 host hash, 2 block set, 3 allow set, 4 block-unverified set
-- ARGV: 1 settings read, 2 new settings (JSON), 3 channel, 4 publish command,
--       5 the new settings as msgpack (for the event), 6.. field/value pairs
-- Publishes: settings (0, settings)
__WRITE_POLICY__
local current = redis.call('HGET', KEYS[1], 'settings')
if not current then return -1 end
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'settings', ARGV[2])
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
write_policy(KEYS[1], KEYS[2], KEYS[3], KEYS[4], cjson.decode(ARGV[2]).policy)
redis.call(ARGV[4], ARGV[3], cmsgpack.pack(K.SettingsSet, 0) .. ARGV[5])
return 1
