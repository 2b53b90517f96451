-- A shared chunk: rendered into knock.lua and cas.lua where WRITE_POLICY stands.
-- Keep what the knock script reads in step with a settings policy: the host's
-- lock and bypass fields and its block, allow and block-unverified sets
-- (lowercase entries).
local function write_policy(host_key, block_key, allow_key, unverified_key, policy)
  if type(policy) ~= 'table' then policy = {} end
  local sets = {[block_key] = 'block', [allow_key] = 'allow', [unverified_key] = 'block_unverified'}
  for key, name in pairs(sets) do
    redis.call('DEL', key)
    if type(policy[name]) == 'table' then
      for _, v in ipairs(policy[name]) do
        if type(v) == 'string' then redis.call('SADD', key, string.lower(v)) end
      end
    end
  end
  local locked = policy.locked == true and '1' or '0'
  local bypass = type(policy.bypass) == 'string' and policy.bypass or 'nobody'
  redis.call('HSET', host_key, 'policy_v', '1', 'locked', locked, 'bypass', bypass)
  return {'1', locked, bypass}
end
