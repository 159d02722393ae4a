-- ARGV: prefix, id, token, final status, result (JSON, '' for none). Returns 1, or nil when the lease is
-- lost. Asked again after it ended the job (the answer was lost), it returns 1 again.
local id, token, status = ARGV[2], ARGV[3], ARGV[4]
if not holds(id, token) then
  if ended_by(id, token) == status then return 1 end
  return false
end
local damaged = check_keys()
if damaged then return damaged end
if ARGV[5] ~= '' then redis.call('HSET', job_key(id), 'result', ARGV[5]) end
release(id, status, now_ms(), token)
return 1
