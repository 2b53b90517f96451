-- Set the host's presence and tell every device.
-- KEYS: 1 presence hash. ARGV: 1 state, 2 meeting (msgpack or ""), 3 meeting id or "",
--       4 channel, 5 publish command, 6 webhook outbox stream key or "" (off),
--       7 operation id (unique per call): sent again (its reply was lost), the
--       call changes, publishes and appends nothing
-- Publishes: presence (0, state, meeting or false)
-- Outbox (ARGV 6 set): host.presence (state, meeting msgpack or "")
if ARGV[7] and redis.call('HGET', KEYS[1], 'op') == ARGV[7] then return 'ok' end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'meeting', ARGV[2], 'meeting_id', ARGV[3],
           'op', ARGV[7] or '')
local m = ARGV[2]
if m == '' then m = cmsgpack.pack(false) end
redis.call(ARGV[5], ARGV[4], cmsgpack.pack(K.PresenceSet, 0, ARGV[1]) .. m)
if ARGV[6] ~= '' then
  redis.call('XADD', ARGV[6], 'MAXLEN', '~', __OUTBOX_MAX__, '*', 'type', H.PRESENCE,
             'state', ARGV[1], 'meeting', ARGV[2])
end
return 'ok'
