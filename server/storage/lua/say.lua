-- A line of text to a guest that is still in the queue.
-- KEYS: 1 guest hash. ARGV: 1 guest id, 2 text, 3 channel, 4 publish command
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'unknown_guest' end
if state ~= 'waiting' and state ~= 'away' then return 'already_resolved' end
redis.call(ARGV[4], ARGV[3], cmsgpack.pack('message', 0, ARGV[1], ARGV[2]))
return 'ok'
