-- Take or renew a calendar's sync lease, with a fencing token: a new holder
-- gets a number higher than any before, so a paused process that wakes up
-- late holds a token the store no longer accepts (cal_commit.lua).
-- KEYS: 1 lease key, 2 fence counter. ARGV: 1 ttl ms, 2 token to renew ("" = take).
-- Returns: the token held (0: someone else holds the lease).
local held = redis.call('GET', KEYS[1])
if ARGV[2] == '' then
  if held then return 0 end
  local token = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
  return token
end
if held ~= ARGV[2] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return tonumber(ARGV[2])
