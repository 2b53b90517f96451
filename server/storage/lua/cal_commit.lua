-- Write what one sync round learned, only while the writer holds the lease
-- with this fencing token (else nothing is written: a newer holder decides).
-- KEYS: 1 lease, 2 state hash, 3 etags hash, 4 events hash.
-- ARGV: 1 token, 2 msgpack {state = {k = v}, etags = {href = etag},
--       gone = {href, ...}, events = {href = {key, meeting}}, unmapped = {href, ...},
--       release = true|false}
-- Returns: 1 written, 0 fenced off.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local c = cmsgpack.unpack(ARGV[2])
for k, v in pairs(c.state or {}) do redis.call('HSET', KEYS[2], k, v) end
for href, etag in pairs(c.etags or {}) do redis.call('HSET', KEYS[3], href, etag) end
for _, href in ipairs(c.gone or {}) do redis.call('HDEL', KEYS[3], href) end
for href, v in pairs(c.events or {}) do
  redis.call('HSET', KEYS[4], href, cmsgpack.pack(v))
end
for _, href in ipairs(c.unmapped or {}) do redis.call('HDEL', KEYS[4], href) end
if c.release then redis.call('DEL', KEYS[1]) end
return 1
