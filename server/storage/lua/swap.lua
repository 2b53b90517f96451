-- Compare-and-set one value: a record changes only from the version read.
-- KEYS: 1 the record. ARGV: 1 the value read, 2 the new value.
-- Returns 1 when swapped, 0 when the record changed since (read it again).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
