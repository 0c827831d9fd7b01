-- Claim pending tasks for this worker: pending -> active with a lease.
-- The caller peeks at the ids first (LRANGE of the list's tail), so every
-- task key touched here is declared; ids another worker took meanwhile are
-- skipped.
-- KEYS[1] asynq:{q}:pending
-- KEYS[2] asynq:{q}:paused
-- KEYS[3] asynq:{q}:active
-- KEYS[4] asynq:{q}:lease
-- KEYS[4+i] asynq:{q}:t:<ARGV[1+i]>
-- ARGV[1] lease expiry, Unix seconds
-- ARGV[2..] task ids
-- Returns id1, msg1, id2, msg2, ... of the tasks claimed ("" for a lost msg).
if redis.call("EXISTS", KEYS[2]) == 1 then
  return {}
end
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call("LREM", KEYS[1], -1, id) == 1 then
    local key = KEYS[3 + i]
    redis.call("LPUSH", KEYS[3], id)
    redis.call("ZADD", KEYS[4], ARGV[1], id)
    redis.call("HSET", key, "state", "active")
    redis.call("HDEL", key, "pending_since")
    out[#out + 1] = id
    out[#out + 1] = redis.call("HGET", key, "msg") or ""
  end
end
return out
