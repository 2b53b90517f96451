-- Apply one lobby event to one or more guests, atomically, by the ONE table in
-- protocol/lobby.py (rendered below as the functions step, final, left and
-- queued, with the guards and side effects its docstring lists). Exactly one
-- reply wins per guest.
-- KEYS: 1 queue zset, 2 presence hash, 3 event counter, 4 deny cool-down zset
--       (identity -> until ms), 5.. guest hashes
-- ARGV: 1 event, 2 now ms, 3 channel, 4 publish command, 5 connection id,
--       6 resume secret, 7 resume window ms, 8 merge meeting id,
--       9 guest key prefix, 10 operation id (unique per call, or ""),
--       11 webhook outbox stream key or "" (off), 12 who answered (for the
--       outbox: "device:<id>", "api", "email" or ""),
--       13 "*" to apply the event to every queued guest, or "*<limit>:<score>"
--       to the oldest <limit> of those queued with a score up to <score> (one
--       slice of a big lobby: each slice is one short atomic step)
--       (then ARGV 14 is the outcome template and 15.. the option names copied
--       from each guest's options into the template's meeting), else
--       14.. per guest: guest id, payload (msgpack; the outcome map for replies,
--       the held map for hold; time_out takes the outcome the knock stored)
-- Idempotent: a guest a step changed keeps its operation id, so the same call
-- sent again (its reply was lost, the Batcher cannot know whether it ran) answers
-- {ok, state} and changes and publishes nothing. A resume is idempotent as it is.
-- Returns per guest: {verdict, state[, ...]}: ok -> {ok, new state[, position, score,
--   counter, held]} (the last four on resume); already_resolved -> {.., state, outcome}
-- Publishes: left (ev, guest, score, reason) | resolved (ev, guest, score, action,
--   outcome) | away (0, guest) | resumed (0, guest, conn) | held (0, guest, held) |
--   dismissed (ev, guest, score, reason, outcome)
-- Outbox (ARGV 11 set), beside each publish: guest.left (guest, reason) |
--   guest.resolved (guest, action, outcome, by) | guest.away (guest) | guest.back (guest) |
--   guest.held (guest, held, by)
__LOOKUPS__
local event, now, chan, pub = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local op, outbox, by = ARGV[10], ARGV[11], ARGV[12]
local function hook(...)
  if outbox ~= '' then
    redis.call('XADD', outbox, 'MAXLEN', '~', __OUTBOX_MAX__, '*', ...)
  end
end
if event == E.MERGE then
  local p = redis.call('HMGET', KEYS[2], 'state', 'meeting_id')
  if p[1] ~= 'in_meeting' or not p[2] or p[2] ~= ARGV[8] then return {{V.NOT_IN_MEETING}} end
end

local guests = {}
if string.sub(ARGV[13], 1, 1) == '*' then
  local template = cmsgpack.unpack(ARGV[14])
  local ids
  if ARGV[13] == '*' then
    ids = redis.call('ZRANGE', KEYS[1], 0, -1)
  else
    local limit, upto = string.match(ARGV[13], '^%*(%d+):(%d+)$')
    ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', upto, 'LIMIT', 0, limit)
  end
  for _, gid in ipairs(ids) do
    local key = ARGV[9] .. gid
    local info = redis.call('HGET', key, 'info')
    local outcome = template
    if info and template.meeting then
      local options = cmsgpack.unpack(info).options or {}
      local meeting = {}
      for k, v in pairs(template.meeting) do meeting[k] = v end
      for i = 15, #ARGV do
        if options[ARGV[i]] ~= nil then meeting[ARGV[i]] = options[ARGV[i]] end
      end
      outcome = {}
      for k, v in pairs(template) do outcome[k] = v end
      outcome.meeting = meeting
    end
    guests[#guests + 1] = {key, gid, cmsgpack.pack(outcome)}
  end
else
  for i = 5, #KEYS do
    guests[#guests + 1] = {KEYS[i], ARGV[14 + (i - 5) * 2], ARGV[15 + (i - 5) * 2]}
  end
end

local out = {}
for _, item in ipairs(guests) do
  local key, gid, payload = item[1], item[2], item[3]
  local g = redis.call('HMGET', key, 'state', 'conn', 'resume', 'score', 'outcome', 'deadline',
                       'op', 'wait_until', __TIMEOUT_FIELD__, 'who', 'cool', 'held')
  local state = g[1]
  if not state then
    out[#out + 1] = {V.UNKNOWN_GUEST}
  elseif op ~= '' and g[7] == op and event ~= E.RESUME then
    out[#out + 1] = {V.OK, state}  -- this very call ran already
  elseif event == E.RESUME and g[3] ~= ARGV[6] then
    out[#out + 1] = {V.UNKNOWN_GUEST}
  elseif event == E.DISCONNECT and g[2] ~= ARGV[5] then
    out[#out + 1] = {V.STALE, state}  -- another socket took this guest over
  elseif event == E.EXPIRE and queued(state) and (not g[6] or tonumber(g[6]) > now) then
    out[#out + 1] = {V.NOT_DUE, state}
  elseif event == E.TIME_OUT and queued(state) and (not g[8] or tonumber(g[8]) > now) then
    out[#out + 1] = {V.NOT_DUE, state}  -- no max wait, held, or not yet
  else
    local new = step(state, event)
    if not new then
      if final(state) then out[#out + 1] = {V.ALREADY_RESOLVED, state, g[5] or ''}
      else out[#out + 1] = {V.INVALID, state} end
    else
      -- One HSET per step (its fields gathered below), an HDEL only of a field
      -- that is set: a call costs ~1 us on a busy Valkey (issue 11).
      local set = {'state', new}
      if op ~= '' then set[#set + 1] = 'op'; set[#set + 1] = op end
      local score = tonumber(g[4])
      if final(new) then
        redis.call('ZREM', KEYS[1], gid)
        if g[6] then redis.call('HDEL', key, 'deadline') end
        local ev = redis.call('INCR', KEYS[3])
        if event == E.DENY and g[10] and tonumber(g[11] or '0') > 0 then
          -- the cool-down; knock.lua compares each entry with its time, and the
          -- lapsed ones go here
          redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
          redis.call('ZADD', KEYS[4], now + tonumber(g[11]), g[10])
        end
        local reason = left(new)
        if reason and event == E.TIME_OUT and g[9] then
          set[#set + 1] = 'outcome'; set[#set + 1] = g[9]
          redis.call('HSET', key, unpack(set))
          redis.call(pub, chan, cmsgpack.pack(K.Dismissed, ev, gid, score, reason) .. g[9])
          hook('type', H.LEFT, 'guest', gid, 'reason', reason)
        elseif reason then
          redis.call('HSET', key, unpack(set))
          redis.call(pub, chan, cmsgpack.pack(K.Left, ev, gid, score, reason))
          hook('type', H.LEFT, 'guest', gid, 'reason', reason)
        else
          set[#set + 1] = 'outcome'; set[#set + 1] = payload
          redis.call('HSET', key, unpack(set))
          redis.call(pub, chan, cmsgpack.pack(K.Resolved, ev, gid, score, event) .. payload)
          hook('type', H.RESOLVED, 'guest', gid, 'action', event, 'outcome', payload, 'by', by)
        end
        out[#out + 1] = {V.OK, new}
      elseif event == E.DISCONNECT then
        set[#set + 1] = 'deadline'; set[#set + 1] = now + tonumber(ARGV[7])
        redis.call('HSET', key, unpack(set))
        redis.call(pub, chan, cmsgpack.pack(K.WentAway, 0, gid))
        hook('type', H.AWAY, 'guest', gid)
        out[#out + 1] = {V.OK, new}
      elseif event == E.RESUME then
        set[#set + 1] = 'conn'; set[#set + 1] = ARGV[5]
        redis.call('HSET', key, unpack(set))
        if g[6] then redis.call('HDEL', key, 'deadline') end
        redis.call(pub, chan, cmsgpack.pack(K.Resumed, 0, gid, ARGV[5]))
        hook('type', H.BACK, 'guest', gid)
        local rank = redis.call('ZRANK', KEYS[1], gid)
        out[#out + 1] = {V.OK, new, (rank or 0) + 1, score, redis.call('GET', KEYS[3]) or '0',
                         g[12] or ''}
      elseif event == E.HOLD then
        set[#set + 1] = 'held'; set[#set + 1] = payload
        redis.call('HSET', key, unpack(set))
        if g[8] then redis.call('HDEL', key, 'wait_until') end  -- answered: no maximum wait
        redis.call(pub, chan, cmsgpack.pack(K.HeldSet, 0, gid) .. payload)
        hook('type', H.HELD, 'guest', gid, 'held', payload, 'by', by)
        out[#out + 1] = {V.OK, new}
      else
        redis.call('HSET', key, unpack(set))
        out[#out + 1] = {V.OK, new}
      end
    end
  end
end
return out
