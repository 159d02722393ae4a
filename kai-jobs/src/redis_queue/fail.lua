-- ARGV: prefix, id, token, error (JSON), retry ('1' or '0'), backoff before the retry (ms). Returns
-- where the job now stands, or nil when the lease is lost. Asked again after it ended the attempt (the
-- answer was lost), it returns where the job stands.
local id, token = ARGV[2], ARGV[3]
if not holds(id, token) then
  local status = ended_by(id, token)
  if status then return status end
  return false
end
local damaged = check_keys()
if damaged then return damaged end
local job = job_key(id)
local attempts, max, cancel = unpack(redis.call('HMGET', job, 'attempts', 'max', 'cancel'))
local now = now_ms()
local status = 'failed'
if cancel == '1' then
  -- Cancelled while it ran: not run again.
  status = 'cancelled'
elseif ARGV[5] == '1' and int(attempts) and int(max) and int(attempts) < int(max) then
  status = 'queued'
end
redis.call('HSET', job, 'error', ARGV[4])
release(id, status, now, token)
if status == 'queued' then
  redis.call('ZADD', p .. ':delayed', now + tonumber(ARGV[6]), id)
  redis.call('INCR', p .. ':depth')
end
return status
