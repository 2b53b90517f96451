-- Move a claimed schedule entry to a later time, only if nobody re-scheduled it
-- since the claim (its score is still the claim score; else it is due sooner).
-- KEYS: 1 zset. ARGV: 1 member, 2 claim score, 3 new score.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
