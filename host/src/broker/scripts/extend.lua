-- Heartbeat: extend the leases this worker holds.
-- KEYS[1] asynq:{q}:lease
-- KEYS[1+i] asynq:{q}:t:<ARGV[2+i]>
-- ARGV[1] new lease expiry, Unix seconds
-- ARGV[2] the worker (its server id)
-- ARGV[3..] task ids
-- Returns, per id, 1 when extended or 0 when the lease is no longer this
-- worker's (then the worker stops running the task).
local out = {}
for i = 1, #ARGV - 2 do
  local id = ARGV[2 + i]
  local owner = redis.call("HGET", KEYS[1 + i], "lease_owner")
  if (owner == false or owner == ARGV[2]) and redis.call("ZSCORE", KEYS[1], id) then
    redis.call("ZADD", KEYS[1], ARGV[1], id)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
