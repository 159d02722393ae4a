-- ARGV: prefix, id, token, lease duration (ms). Returns {lease end, cancel asked for (0 or 1)}, or nil
-- when the lease is lost.
-- ARGV[5]: how long past the lease its token is kept (ms).
local id, token, duration = ARGV[2], ARGV[3], tonumber(ARGV[4])
if not holds(id, token) then return false end
local expires = now_ms() + duration
redis.call('HSET', job_key(id), 'expires', expires)
redis.call('ZADD', p .. ':leases', expires, id)
redis.call('SET', p .. ':lease:' .. token, id, 'PX', duration + tonumber(ARGV[5]))
return {expires, redis.call('HGET', job_key(id), 'cancel') == '1' and 1 or 0}
