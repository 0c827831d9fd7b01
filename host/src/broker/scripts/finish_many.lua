-- Many tasks of one queue end well and are deleted: one call acknowledges a
-- batch (tasks without retention or a unique lock).
-- KEYS[1] asynq:{q}:active
-- KEYS[2] asynq:{q}:lease
-- KEYS[3] asynq:{q}:processed:<date>
-- KEYS[4] asynq:{q}:processed
-- KEYS[4+i] asynq:{q}:t:<ARGV[2+i]>
-- ARGV[1] daily counter expiry, Unix seconds
-- ARGV[2] the acknowledging worker (its server id)
-- ARGV[3..] task ids
-- Returns, per id, 1 when acknowledged or 0 when this worker no longer
-- holds the lease (it expired and was recovered, or another worker holds it).
local n = #ARGV - 2
local out = {}
local keys = {}
local owned = {}
for i = 1, n do
  local id = ARGV[2 + i]
  local owner = redis.call("HGET", KEYS[4 + i], "lease_owner")
  -- A lease owned by this worker is present: every script that removes a
  -- lease also clears its owner. Those leases go in one ZREM below.
  local held = owner == ARGV[2]
  if held then
    owned[#owned + 1] = id
  elseif owner == false then
    -- A lease taken by a worker that does not record owners: held if present.
    held = redis.call("ZREM", KEYS[2], id) == 1
  end
  if held then
    out[i] = 1
    redis.call("LREM", KEYS[1], -1, id)
    keys[#keys + 1] = KEYS[4 + i]
  else
    out[i] = 0
  end
end
if #owned > 0 then
  redis.call("ZREM", KEYS[2], unpack(owned))
end
if #keys > 0 then
  redis.call("DEL", unpack(keys))
  if redis.call("INCRBY", KEYS[3], #keys) == #keys then
    redis.call("EXPIREAT", KEYS[3], ARGV[1])
  end
  redis.call("INCRBY", KEYS[4], #keys)
end
return out
