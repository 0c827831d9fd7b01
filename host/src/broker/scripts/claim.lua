-- Claim pending tasks for this worker: pending -> active with a lease.
-- The caller names the ids it expects at the list's tail (from a peek, or
-- the hint the previous claim returned), so every task key touched here is
-- declared. When the tail is still exactly those ids (the usual case) they
-- are taken in one LTRIM. Otherwise another worker got there first: only
-- ids whose task is still pending are taken, one by one, so ids already
-- gone never cost a scan of the list.
-- KEYS[1] asynq:{q}:pending
-- KEYS[2] asynq:{q}:paused
-- KEYS[3] asynq:{q}:active
-- KEYS[4] asynq:{q}:lease
-- KEYS[4+i] asynq:{q}:t:<ARGV[3+i]>
-- ARGV[1] lease expiry, Unix seconds
-- ARGV[2] the claiming worker (its server id), kept as the lease's owner
-- ARGV[3] how many ids to return as the hint for the next claim
-- ARGV[4..] task ids, oldest first
-- Returns {claimed, hint}: claimed is id1, msg1, id2, msg2, ... ("" for a
-- lost msg); hint is the ids now at the tail (LRANGE order, oldest last).
if redis.call("EXISTS", KEYS[2]) == 1 then
  return {{}, {}}
end
local n = #ARGV - 3
local h = tonumber(ARGV[3])
local taken = {}
-- One read for both the tail to check and the hint behind it.
local seen = redis.call("LRANGE", KEYS[1], -(n + h), -1)
local m = #seen
local intact = m >= n
if intact then
  for i = 1, n do
    -- The list reads newest first; ARGV is oldest first.
    if seen[m + 1 - i] ~= ARGV[3 + i] then
      intact = false
      break
    end
  end
end
local hint = {}
if intact then
  redis.call("LTRIM", KEYS[1], 0, -(n + 1))
  for i = 1, n do
    taken[#taken + 1] = i
  end
  for i = 1, m - n do
    hint[i] = seen[i]
  end
else
  for i = 1, n do
    if redis.call("HGET", KEYS[4 + i], "state") == "pending"
      and redis.call("LREM", KEYS[1], "-1", ARGV[3 + i]) == 1 then
      taken[#taken + 1] = i
    end
  end
  if h > 0 then
    hint = redis.call("LRANGE", KEYS[1], -h, -1)
  end
end
local out = {}
if #taken > 0 then
  local ids = {}
  local lease = {}
  for _, i in ipairs(taken) do
    local id = ARGV[3 + i]
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
end
return {out, hint}
