-- Apply one lobby event to one or more guests, atomically, by the ONE table in
-- protocol/lobby.py (rendered below as T). Exactly one reply wins per guest.
-- KEYS: 1 queue zset, 2 presence hash, 3 event counter, 4.. guest hashes
-- ARGV: 1 event, 2 now ms, 3 channel, 4 publish command, 5 connection id,
--       6 resume secret, 7 resume window ms, 8 merge meeting id,
--       9.. per guest: guest id, payload (msgpack; outcome map for replies)
local T = __TRANSITIONS__
local FINAL = __FINAL__
local LEFT = __LEFT__
local event, now, chan, pub = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
if event == 'merge' then
  local p = redis.call('HMGET', KEYS[2], 'state', 'meeting_id')
  if p[1] ~= 'in_meeting' or not p[2] or p[2] ~= ARGV[8] then return {{'not_in_meeting'}} end
end
local out = {}
for i = 4, #KEYS do
  local key = KEYS[i]
  local gid = ARGV[9 + (i - 4) * 2]
  local payload = ARGV[10 + (i - 4) * 2]
  local g = redis.call('HMGET', key, 'state', 'conn', 'resume', 'score', 'outcome')
  local state = g[1]
  if not state then
    out[#out + 1] = {'unknown_guest'}
  elseif event == 'resume' and g[3] ~= ARGV[6] then
    out[#out + 1] = {'unknown_guest'}
  elseif event == 'disconnect' and g[2] ~= ARGV[5] then
    out[#out + 1] = {'stale'}  -- another socket took this guest over
  else
    local new = T[state] and T[state][event]
    if not new then
      if FINAL[state] then out[#out + 1] = {'already_resolved', state, g[5] or ''}
      else out[#out + 1] = {'invalid', state} end
    else
      redis.call('HSET', key, 'state', new)
      local score = tonumber(g[4])
      if FINAL[new] then
        redis.call('ZREM', KEYS[1], gid)
        local ev = redis.call('INCR', KEYS[3])
        if LEFT[new] then
          redis.call(pub, chan, cmsgpack.pack('left', ev, gid, score, LEFT[new]))
        else
          redis.call('HSET', key, 'outcome', payload)
          redis.call(pub, chan, cmsgpack.pack('resolved', ev, gid, score, event) .. payload)
        end
        out[#out + 1] = {'ok', new}
      elseif event == 'disconnect' then
        redis.call('HSET', key, 'deadline', now + tonumber(ARGV[7]))
        redis.call(pub, chan, cmsgpack.pack('away', 0, gid))
        out[#out + 1] = {'ok', new}
      elseif event == 'resume' then
        redis.call('HSET', key, 'conn', ARGV[5])
        redis.call('HDEL', key, 'deadline')
        redis.call(pub, chan, cmsgpack.pack('resumed', 0, gid, ARGV[5]))
        local rank = redis.call('ZRANK', KEYS[1], gid)
        out[#out + 1] = {'ok', new, (rank or 0) + 1, score, redis.call('GET', KEYS[3]) or '0'}
      else
        out[#out + 1] = {'ok', new}
      end
    end
  end
end
return out
