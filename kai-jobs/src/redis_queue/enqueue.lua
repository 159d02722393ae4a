-- ARGV: prefix, id, spec (JSON), priority, attempt budget, idempotency key ('' for none).
-- Returns the job's id: the new one, or the first one enqueued with the key.
local id, priority, key = ARGV[2], ARGV[4], ARGV[6]
local damaged = check_keys()
if damaged then return damaged end
local kind = redis.call('TYPE', stream_key(priority)).ok
if kind ~= 'stream' and kind ~= 'none' then return redis.error_reply('damaged queue: stream ' .. priority) end
if key ~= '' then
  local first = redis.call('HGET', p .. ':idem', key)
  if first then return first end
end
local now = now_ms()
redis.call('HSET', job_key(id), 'spec', ARGV[3], 'priority', priority, 'max', ARGV[5], 'status', 'queued',
  'attempts', 0, 'cancel', 0, 'events', 0, 'created', now, 'updated', now)
push(id, priority)
redis.call('INCR', p .. ':depth')
if key ~= '' then redis.call('HSET', p .. ':idem', key, id) end
return id
