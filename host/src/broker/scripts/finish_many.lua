-- Many tasks of one queue end well and are deleted (tasks without
-- retention or a unique lock), then, in the same call, tasks to replace
-- them may be claimed (see claim_step above): the acknowledgements come
-- first, so the queue's active list never holds more of this worker's
-- tasks than its concurrency allows.
-- KEYS[1] asynq:{q}:active
-- KEYS[2] asynq:{q}:lease
-- KEYS[3] asynq:{q}:processed:<date>
-- KEYS[4] asynq:{q}:processed
-- KEYS[5] asynq:{q}:pending
-- KEYS[6] asynq:{q}:paused
-- KEYS[7] asynq:{q}:limit
-- KEYS[7+i] asynq:{q}:t:<id i>, the n acknowledged tasks, then the tasks
--           to claim
-- ARGV[1] daily counter expiry, Unix seconds
-- ARGV[2] this worker (its server id)
-- ARGV[3] n, how many tasks to acknowledge
-- ARGV[4] the lease expiry for claimed tasks, Unix seconds
-- ARGV[5] how many ids to return as the hint for the next claim (0: no
--         claim and no hint)
-- ARGV[6..8] the queue's limits: rate (tasks a second), burst, max_running
--            (0: not set)
-- ARGV[7+2i] id i
-- ARGV[8+2i] the lease expiry this worker last wrote for id i
-- ARGV[9+2n..] ids to claim, oldest first
-- Returns {acked, claimed, hint, held}: acked has, per id, 1 when
-- acknowledged or 0 when this worker no longer holds the lease (it expired
-- and was recovered, or another worker holds it); claimed, hint and held as
-- claim_step.
--
-- Whose lease is it? One ZMSCORE reads every lease of the batch. A lease
-- whose score is the one this worker last wrote is this worker's: another
-- worker could only have claimed the task after the lease expired and was
-- recovered, and its own lease would then end later (unless the clocks of
-- the workers differ by more than a whole lease, which fencing rules out
-- already). Any other score (say, a heartbeat whose reply was lost) is
-- settled by the owner recorded in the task.
local n = tonumber(ARGV[3])
local out = {}
if n > 0 then
  local ids = {}
  for i = 1, n do
    ids[i] = ARGV[7 + 2 * i]
  end
  local scores = redis.call("ZMSCORE", KEYS[2], unpack(ids))
  local keys = {}
  local owned = {}
  for i = 1, n do
    local held = false
    if scores[i] then
      if scores[i] == ARGV[8 + 2 * i] then
        held = true
      else
        local owner = redis.call("HGET", KEYS[7 + i], "lease_owner")
        -- No owner: a lease taken by a worker that does not record owners.
        held = owner == ARGV[2] or owner == false
      end
    end
    if held then
      out[i] = 1
      owned[#owned + 1] = ids[i]
      keys[#keys + 1] = KEYS[7 + i]
    else
      out[i] = 0
    end
  end
  if #owned > 0 then
    -- Tasks mostly finish in the order they started, so the acknowledged
    -- ones are often the oldest in active, at its tail: one LTRIM takes
    -- those, an LREM each the others.
    local left = {}
    for _, id in ipairs(owned) do
      left[id] = true
    end
    local tail = redis.call("LRANGE", KEYS[1], -#owned, -1)
    local trimmed = 0
    for i = #tail, 1, -1 do
      if not left[tail[i]] then
        break
      end
      left[tail[i]] = nil
      trimmed = trimmed + 1
    end
    if trimmed > 0 then
      redis.call("LTRIM", KEYS[1], 0, -(trimmed + 1))
    end
    for _, id in ipairs(owned) do
      if left[id] then
        redis.call("LREM", KEYS[1], "-1", id)
      end
    end
    redis.call("ZREM", KEYS[2], unpack(owned))
    redis.call("DEL", unpack(keys))
    if redis.call("INCRBY", KEYS[3], #keys) == #keys then
      redis.call("EXPIREAT", KEYS[3], ARGV[1])
    end
    redis.call("INCRBY", KEYS[4], #keys)
  end
end
local keys = {}
local ids = {}
for i = 1, #ARGV - 8 - 2 * n do
  keys[i] = KEYS[7 + n + i]
  ids[i] = ARGV[8 + 2 * n + i]
end
local lim = {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])}
local claimed, hint, held = claim_step(KEYS[5], KEYS[6], KEYS[1], KEYS[2], keys, ids,
  ARGV[4], ARGV[2], tonumber(ARGV[5]), KEYS[7], lim)
return {out, claimed, hint, held}
