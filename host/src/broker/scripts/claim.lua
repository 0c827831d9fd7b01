-- Claim pending tasks for this worker: pending -> active with a lease.
-- The caller peeks at the ids first (LRANGE of the list's tail), so every
-- task key touched here is declared. When the tail is still exactly the
-- peeked ids (the usual case) they are taken in one LTRIM; otherwise each
-- id still pending is taken on its own and the others are skipped.
-- KEYS[1] asynq:{q}:pending
-- KEYS[2] asynq:{q}:paused
-- KEYS[3] asynq:{q}:active
-- KEYS[4] asynq:{q}:lease
-- KEYS[4+i] asynq:{q}:t:<ARGV[2+i]>
-- ARGV[1] lease expiry, Unix seconds
-- ARGV[2] the claiming worker (its server id), kept as the lease's owner
-- ARGV[3..] task ids, oldest first
-- Returns id1, msg1, id2, msg2, ... of the tasks claimed ("" for a lost msg).
if redis.call("EXISTS", KEYS[2]) == 1 then
  return {}
end
local n = #ARGV - 2
local taken = {}
local tail = redis.call("LRANGE", KEYS[1], -n, -1)
local intact = #tail == n
if intact then
  for i = 1, n do
    -- The tail lists newest first; ARGV is oldest first.
    if tail[n + 1 - i] ~= ARGV[2 + i] then
      intact = false
      break
    end
  end
end
if intact then
  redis.call("LTRIM", KEYS[1], 0, -(n + 1))
  for i = 1, n do
    taken[#taken + 1] = i
  end
else
  for i = 1, n do
    if redis.call("LREM", KEYS[1], -1, ARGV[2 + i]) == 1 then
      taken[#taken + 1] = i
    end
  end
end
if #taken == 0 then
  return {}
end
local ids = {}
local lease = {}
local out = {}
for _, i in ipairs(taken) do
  local id = ARGV[2 + i]
  local key = KEYS[4 + i]
  ids[#ids + 1] = id
  lease[#lease + 1] = ARGV[1]
  lease[#lease + 1] = id
  redis.call("HSET", key, "state", "active", "lease_owner", ARGV[2])
  out[#out + 1] = id
  out[#out + 1] = redis.call("HGET", key, "msg") or ""
end
redis.call("LPUSH", KEYS[3], unpack(ids))
redis.call("ZADD", KEYS[4], unpack(lease))
return out
