-- ARGV: prefix, id, token, event (JSON), the most events a job keeps. Returns 1, or nil when the lease
-- is lost. Each event is kept as "attempt:at_ms:event".
local id, token = ARGV[2], ARGV[3]
if not holds(id, token) then return false end
local job = job_key(id)
local count, attempts = unpack(redis.call('HMGET', job, 'events', 'attempts'))
local events = p .. ':events:' .. id
local kind = redis.call('TYPE', events).ok
if not int(count) or not int(attempts) or (kind ~= 'list' and kind ~= 'none') then
  return redis.error_reply('damaged job ' .. id)
end
if int(count) < tonumber(ARGV[5]) then
  redis.call('RPUSH', events, attempts .. ':' .. string.format('%d', now_ms()) .. ':' .. ARGV[4])
  redis.call('HINCRBY', job, 'events', 1)
end
return 1
