-- Many tasks of one queue end well and are deleted: one call acknowledges a
-- batch (tasks without retention or a unique lock).
-- KEYS[1] asynq:{q}:active
-- KEYS[2] asynq:{q}:lease
-- KEYS[3] asynq:{q}:processed:<date>
-- KEYS[4] asynq:{q}:processed
-- KEYS[4+i] asynq:{q}:t:<id i>
-- ARGV[1] daily counter expiry, Unix seconds
-- ARGV[2] the acknowledging worker (its server id)
-- ARGV[1+2i] id i
-- ARGV[2+2i] the lease expiry this worker last wrote for id i
-- Returns, per id, 1 when acknowledged or 0 when this worker no longer
-- holds the lease (it expired and was recovered, or another worker holds it).
--
-- Whose lease is it? One ZMSCORE reads every lease of the batch. A lease
-- whose score is the one this worker last wrote is this worker's: another
-- worker could only have claimed the task after the lease expired and was
-- recovered, and its own lease would then end later (unless the clocks of
-- the workers differ by more than a whole lease, which fencing rules out
-- already). Any other score (say, a heartbeat whose reply was lost) is
-- settled by the owner recorded in the task.
local n = (#ARGV - 2) / 2
local ids = {}
for i = 1, n do
  ids[i] = ARGV[1 + 2 * i]
end
local scores = redis.call("ZMSCORE", KEYS[2], unpack(ids))
local out = {}
local keys = {}
local owned = {}
for i = 1, n do
  local held = false
  if scores[i] then
    if scores[i] == ARGV[2 + 2 * i] then
      held = true
    else
      local owner = redis.call("HGET", KEYS[4 + i], "lease_owner")
      -- No owner: a lease taken by a worker that does not record owners.
      held = owner == ARGV[2] or owner == false
    end
  end
  if held then
    out[i] = 1
    owned[#owned + 1] = ids[i]
    redis.call("LREM", KEYS[1], "-1", ids[i])
    keys[#keys + 1] = KEYS[4 + i]
  else
    out[i] = 0
  end
end
if #owned > 0 then
  redis.call("ZREM", KEYS[2], unpack(owned))
  redis.call("DEL", unpack(keys))
  if redis.call("INCRBY", KEYS[3], #keys) == #keys then
    redis.call("EXPIREAT", KEYS[3], ARGV[1])
  end
  redis.call("INCRBY", KEYS[4], #keys)
end
return out
