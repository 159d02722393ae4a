-- ARGV: prefix, id. Returns where the job now stands, or nil when there is no such job.
local id = ARGV[2]
local job = job_key(id)
if not is_job(id) then return false end
local status, priority, entry = unpack(redis.call('HMGET', job, 'status', 'priority', 'entry'))
if not status then return false end
local damaged = check_keys()
if damaged then return damaged end
local now = now_ms()
if status == 'queued' then
  -- Waiting in its stream (not delivered yet) or for its backoff.
  if valid_entry(entry) and valid_priority(priority) and redis.call('TYPE', stream_key(priority)).ok == 'stream' then
    redis.call('XDEL', stream_key(priority), entry)
  end
  redis.call('ZREM', p .. ':delayed', id)
  redis.call('HDEL', job, 'entry')
  redis.call('HSET', job, 'status', 'cancelled', 'updated', now)
  redis.call('DECR', p .. ':depth')
  return 'cancelled'
elseif status == 'running' then
  redis.call('HSET', job, 'cancel', 1, 'updated', now)
end
return status
