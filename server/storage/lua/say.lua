-- A line of text to a guest that is still in the queue.
-- KEYS: 1 guest hash. ARGV: 1 guest id, 2 text, 3 channel, 4 publish command
-- Publishes: message (0, guest, text)
__LOOKUPS__
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return V.UNKNOWN_GUEST end
if not queued(state) then return V.ALREADY_RESOLVED end
redis.call(ARGV[4], ARGV[3], cmsgpack.pack(K.Said, 0, ARGV[1], ARGV[2]))
return V.OK
