-- Create a host record in one step: nobody ever sees half of it.
-- KEYS: 1 host hash, 2 block set, 3 allow set, 4 block-unverified set.
-- ARGV: field/value pairs (settings JSON among them; its policy is the default:
-- unlocked, bypass nobody, no lists).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], unpack(ARGV))
redis.call('HSET', KEYS[1], 'policy_v', '1', 'locked', '0', 'bypass', 'nobody')
return 1
