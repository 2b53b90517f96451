-- Write a record once per idempotency claim (dedicated meetings, bookings).
-- KEYS: 1 the claim key (ignored when ARGV[1] is "0"), 2 the record key,
--       3 a sorted set that lists the record. All three share one hash tag.
-- ARGV: 1 "1" to claim | "0", 2 the claim's value, 3 the record (msgpack),
--       4 the record's score in the set, 5 its member there.
-- Returns the claim's value: ARGV[2] when this call wrote the record, else the
-- value an earlier call claimed (that record stands; nothing is written).
if ARGV[1] == '1' then
  local found = redis.call('GET', KEYS[1])
  if found then return found end
  redis.call('SET', KEYS[1], ARGV[2])
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
return ARGV[2]
