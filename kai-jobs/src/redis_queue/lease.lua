-- ARGV: prefix, worker, token, lease duration (ms, at least 1), the error an expired last attempt fails
-- with (JSON), the error a damaged job fails with (JSON), how long past the lease the token is kept
-- (ms).
-- Returns {lease end, id, the job's fields} for the job leased, or nil. Asked again with the same
-- token (its answer was lost), it returns the job that token leased, while it still holds it.
local worker, token, duration = ARGV[2], ARGV[3], tonumber(ARGV[4])
local damaged = check_keys()
if damaged then return damaged end
local now = now_ms()
local lease_key = p .. ':lease:' .. token

local function answer(id)
  local job = job_key(id)
  return {int(redis.call('HGET', job, 'expires')) or 0, id, redis.call('HGETALL', job)}
end

if redis.call('TYPE', lease_key).ok == 'string' then
  local earlier = redis.call('GET', lease_key)
  if holds(earlier, token) then return answer(earlier) end
end

-- A job's status and integer fields, or nothing when its record is not a hash.
local function counts(id)
  if not is_job(id) then return nil end
  local status, attempts, max, cancel, priority =
    unpack(redis.call('HMGET', job_key(id), 'status', 'attempts', 'max', 'cancel', 'priority'))
  return status, int(attempts), int(max), cancel, priority
end

-- Takes a job whose fields were checked (`counts` gave its attempts and budget).
local function take(id)
  local job = job_key(id)
  local expires = now + duration
  redis.call('HINCRBY', job, 'attempts', 1)
  redis.call('HDEL', job, 'ended_by')
  redis.call('HSET', job, 'status', 'running', 'token', token, 'worker', worker, 'expires', expires,
    'updated', now)
  redis.call('ZADD', p .. ':leases', expires, id)
  redis.call('SET', lease_key, id, 'PX', duration + tonumber(ARGV[7]))
  return answer(id)
end

-- A job whose fields this queue's scripts would not have written: out of the queue, as a dead letter.
local function bury(id)
  redis.call('ZREM', p .. ':delayed', id)
  redis.call('HSET', job_key(id), 'error', ARGV[6])
  release(id, 'failed', now)
end

-- Retries whose backoff has passed go to the back of their priority's stream (at most 100 a call).
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. ':delayed', '-inf', now, 'LIMIT', 0, 100)) do
  local status, attempts, max, _, priority = counts(id)
  local kind = valid_priority(priority) and redis.call('TYPE', stream_key(priority)).ok
  if status == 'queued' and attempts and max and (kind == 'stream' or kind == 'none') then
    redis.call('ZREM', p .. ':delayed', id)
    push(id, priority)
  elseif status == 'queued' then
    redis.call('DECR', p .. ':depth')
    bury(id)
  else
    redis.call('ZREM', p .. ':delayed', id)
  end
end

-- A job whose worker stopped renewing its lease first (it was started already): its attempt is over.
for _ = 1, 100 do
  local expired = redis.call('ZRANGEBYSCORE', p .. ':leases', '-inf', '(' .. string.format('%d', now), 'LIMIT', 0, 1)[1]
  if not expired then break end
  local status, attempts, max, cancel, priority = counts(expired)
  if status ~= 'running' then
    redis.call('ZREM', p .. ':leases', expired)
  elseif not (attempts and max) then
    bury(expired)
  elseif cancel == '1' then
    -- A cancel asked for while its worker ran it, which that worker never saw (it died).
    release(expired, 'cancelled', now)
  elseif attempts >= max then
    redis.call('HSET', job_key(expired), 'error', ARGV[5])
    release(expired, 'failed', now)
  else
    -- The stream's pending entry passes to this worker with the job (when the entry is there).
    local entry, old = unpack(redis.call('HMGET', job_key(expired), 'entry', 'token'))
    if valid_entry(entry) and valid_priority(priority) then
      redis.pcall('XCLAIM', stream_key(priority), 'workers', worker, 0, entry, 'JUSTID')
    end
    if old then redis.call('DEL', p .. ':lease:' .. old) end
    return take(expired)
  end
end

-- Then the next job due: highest priority first, each priority's stream in order. Entries that are
-- not a waiting job of this queue, and jobs whose records are damaged, are taken out: at most 100 a
-- call.
local known = {queued = true, running = true, succeeded = true, failed = true, cancelled = true}
local dropped = 0
for _, priority in ipairs(redis.call('ZREVRANGE', p .. ':priorities', 0, -1)) do
  local stream = stream_key(priority)
  while dropped < 100 do
    local reply = valid_priority(priority)
      and redis.pcall('XREADGROUP', 'GROUP', 'workers', worker, 'COUNT', 1, 'STREAMS', stream, '>')
    if not valid_priority(priority) or (type(reply) == 'table' and reply.err) then
      -- A priority whose stream is gone or not ours.
      redis.call('ZREM', p .. ':priorities', priority)
      break
    end
    if not reply then
      drop_if_empty(stream, priority)
      break
    end
    local entry = reply[1][2][1]
    local fields = entry[2]
    local id = fields and fields[1] == 'id' and fields[2]
    local status, attempts, max
    if id then status, attempts, max = counts(id) end
    local current = status and redis.call('HGET', job_key(id), 'entry') == entry[1]
    if current and status == 'queued' and attempts and max then
      redis.call('DECR', p .. ':depth')
      return take(id)
    elseif current and (status == 'queued' or not known[status]) then
      if status == 'queued' then redis.call('DECR', p .. ':depth') end
      bury(id)
      dropped = dropped + 1
    else
      redis.call('XACK', stream, 'workers', entry[1])
      redis.call('XDEL', stream, entry[1])
      dropped = dropped + 1
    end
  end
end
return false
