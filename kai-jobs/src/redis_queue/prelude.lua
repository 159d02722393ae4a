-- Shared by every script of the Redis queue. ARGV[1] is the queue's key prefix; every key is under it.
-- Each script checks what it reads before its first write (Redis does not roll a script back), so a
-- damaged or foreign key makes a call fail with nothing changed.
local p = ARGV[1]

-- The server's clock, in milliseconds since the Unix epoch: one clock for every worker machine.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function job_key(id) return p .. ':job:' .. id end
local function stream_key(priority) return p .. ':stream:' .. priority end

-- `value` as a number if it is an integer Redis's INCR and HINCRBY take (no sign but '-', no leading
-- zero, at most 18 digits), else nil.
local function int(value)
  if type(value) ~= 'string' then return nil end
  if value == '0' or string.match(value, '^%-?[1-9]%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?%d?$') then
    return tonumber(value)
  end
  return nil
end

-- Whether `entry` is a stream entry id.
local function valid_entry(entry)
  return type(entry) == 'string' and string.match(entry, '^%d+%-%d+$') ~= nil
end

-- Fails the call, before any write, unless the queue's own keys have their types and the counters are
-- integers.
local function check_keys()
  for _, name in ipairs({'priorities', 'delayed', 'leases', 'dead'}) do
    local kind = redis.call('TYPE', p .. ':' .. name).ok
    if kind ~= 'zset' and kind ~= 'none' then return redis.error_reply('damaged queue: ' .. name) end
  end
  local idem = redis.call('TYPE', p .. ':idem').ok
  if idem ~= 'hash' and idem ~= 'none' then return redis.error_reply('damaged queue: idem') end
  for _, name in ipairs({'depth', 'seq'}) do
    local kind = redis.call('TYPE', p .. ':' .. name).ok
    if kind ~= 'none' and (kind ~= 'string' or not int(redis.call('GET', p .. ':' .. name))) then
      return redis.error_reply('damaged queue: ' .. name)
    end
  end
  return nil
end

-- Whether `priority` is an integer a stream is named after.
local function valid_priority(priority)
  return type(priority) == 'string' and string.match(priority, '^%-?%d+$') ~= nil
end

-- Puts a job at the back of its priority's stream (made, with the workers' consumer group, if new).
local function push(id, priority)
  local stream = stream_key(priority)
  if redis.call('EXISTS', stream) == 0 then
    redis.call('XGROUP', 'CREATE', stream, 'workers', '0', 'MKSTREAM')
  end
  redis.call('ZADD', p .. ':priorities', priority, priority)
  redis.call('HSET', job_key(id), 'entry', redis.call('XADD', stream, '*', 'id', id))
end

-- Deletes a stream that holds nothing (no entry waiting or pending), with its group and consumers.
local function drop_if_empty(stream, priority)
  if redis.call('XLEN', stream) == 0 then
    redis.call('DEL', stream)
    redis.call('ZREM', p .. ':priorities', priority)
  end
end

-- Ends a job's run with `status`: acknowledges and deletes its stream entry (and the stream, with its
-- group and consumers, once it holds nothing), forgets its lease, remembers the lease token `by` that
-- ended it (nil when no worker did), and files it with the dead letters if it failed.
local function release(id, status, now, by)
  local job = job_key(id)
  local priority, entry, token = unpack(redis.call('HMGET', job, 'priority', 'entry', 'token'))
  if valid_entry(entry) and valid_priority(priority) then
    local stream = stream_key(priority)
    if redis.call('TYPE', stream).ok == 'stream' then
      redis.pcall('XACK', stream, 'workers', entry)
      redis.call('XDEL', stream, entry)
      drop_if_empty(stream, priority)
    end
  end
  redis.call('ZREM', p .. ':leases', id)
  if token then redis.call('DEL', p .. ':lease:' .. token) end
  redis.call('HDEL', job, 'entry', 'token', 'worker', 'expires')
  redis.call('HSET', job, 'status', status, 'updated', now, 'ended_by', by or '')
  if status == 'failed' then
    redis.call('ZADD', p .. ':dead', redis.call('INCR', p .. ':seq'), id)
  end
end

-- Whether the job's record is a hash (anything else is not this queue's).
local function is_job(id)
  return redis.call('TYPE', job_key(id)).ok == 'hash'
end

-- Whether the lease with this token still holds the running job.
local function holds(id, token)
  if not is_job(id) then return false end
  local status, held = unpack(redis.call('HMGET', job_key(id), 'status', 'token'))
  return status == 'running' and held == token
end

-- Where a job stands when the lease with this token already ended it (the caller's answer was lost
-- and it asks again), or nil.
local function ended_by(id, token)
  if not is_job(id) then return nil end
  local status, ended = unpack(redis.call('HMGET', job_key(id), 'status', 'ended_by'))
  if ended == token then return status end
  return nil
end
