-- Remove claimed schedule entries, each only if nobody re-scheduled it since
-- the claim (its score is still the claim score).
-- KEYS: 1 zset. ARGV: member, claim score, member, claim score, ...
local n = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return n
