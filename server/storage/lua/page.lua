-- A page of the queue: up to ARGV 3 guests after the guest ARGV 2 ('' : from the
-- oldest), oldest first, and whether more follow.
-- KEYS: 1 queue zset. ARGV: 1 guest key prefix, 2 after guest id or '', 3 limit
-- Returns: {{info, state, held, ...}, more (0/1)}
local limit = tonumber(ARGV[3])
local start = 0
if ARGV[2] ~= '' then
  local rank = redis.call('ZRANK', KEYS[1], ARGV[2])
  if not rank then
    -- that guest left: continue after its place by score if we still know it
    local score = redis.call('HGET', ARGV[1] .. ARGV[2], 'score')
    if not score then return {{}, 0} end
    start = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. score)
  else
    start = rank + 1
  end
end
local ids = redis.call('ZRANGE', KEYS[1], start, start + limit)
local out = {}
for i, gid in ipairs(ids) do
  if i > limit then break end
  local g = redis.call('HMGET', ARGV[1] .. gid, 'info', 'state', 'held')
  if g[1] then
    out[#out + 1] = g[1]
    out[#out + 1] = g[2] or ''
    out[#out + 1] = g[3] or ''
  end
end
return {out, #ids > limit and 1 or 0}
