-- ARGV: prefix, worker, token, lease duration (ms), the error an expired last attempt fails with (JSON),
-- the error a damaged job fails with (JSON).
-- Returns {lease end, id, the job's fields} for the job leased, or nil. Asked again with the same
-- token (the answer was lost), it returns the job that token leased, if it still holds it.
local worker, token, duration = ARGV[2], ARGV[3], tonumber(ARGV[4])
local damaged = check_keys()
if damaged then return damaged end
local now = now_ms()
local lease_key = p .. ':lease:' .. token

local function answer(id)
  local job = job_key(id)
  return {tonumber(redis.call('HGET', job, 'expires')), id, redis.call('HGETALL', job)}
end

local earlier = redis.call('GET', lease_key)
if earlier and holds(earlier, token) then return answer(earlier) end

local function take(id)
  local job = job_key(id)
  local expires = now + duration
  redis.call('HINCRBY', job, 'attempts', 1)
  redis.call('HSET', job, 'status', 'running', 'token', token, 'worker', worker, 'expires', expires,
    'updated', now)
  redis.call('ZADD', p .. ':leases', expires, id)
  redis.call('SET', lease_key, id, 'PX', duration)
  return answer(id)
end

-- A job whose fields this queue's scripts would not have written: out of the queue, as a dead letter.
local function bury(id)
  redis.call('ZREM', p .. ':delayed', id)
  redis.call('HSET', job_key(id), 'error', ARGV[6])
  release(id, 'failed', now)
end

local function counts(id)
  local status, attempts, max, cancel = unpack(redis.call('HMGET', job_key(id), 'status', 'attempts', 'max', 'cancel'))
  return status, tonumber(attempts), tonumber(max), cancel
end

-- Retries whose backoff has passed go to the back of their priority's stream (at most 100 a call).
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. ':delayed', '-inf', now, 'LIMIT', 0, 100)) do
  local status, attempts, max = counts(id)
  local priority = redis.call('HGET', job_key(id), 'priority')
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
  local status, attempts, max, cancel = counts(expired)
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
    local priority, entry, old = unpack(redis.call('HMGET', job_key(expired), 'priority', 'entry', 'token'))
    if entry and valid_priority(priority) then
      redis.pcall('XCLAIM', stream_key(priority), 'workers', worker, 0, entry, 'JUSTID')
    end
    if old then redis.call('DEL', p .. ':lease:' .. old) end
    return take(expired)
  end
end

-- Then the next job due: highest priority first, each priority's stream in order. Entries that are
-- not a waiting job of this queue are dropped, at most 100 a call.
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
    if id and redis.call('HGET', job_key(id), 'status') == 'queued' and redis.call('HGET', job_key(id), 'entry') == entry[1] then
      local _, attempts, max = counts(id)
      if attempts and max then
        redis.call('DECR', p .. ':depth')
        return take(id)
      end
      redis.call('DECR', p .. ':depth')
      bury(id)
    else
      redis.call('XACK', stream, 'workers', entry[1])
      redis.call('XDEL', stream, entry[1])
      dropped = dropped + 1
    end
  end
end
return false
