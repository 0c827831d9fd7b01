-- Enqueue one task: pending now, or scheduled for later; optionally unique.
-- KEYS[1] asynq:{q}:t:<id>
-- KEYS[2] asynq:{q}:pending (list) when ARGV[4] == "0", else asynq:{q}:scheduled (zset)
-- KEYS[3] asynq:{q}:wake
-- KEYS[4] asynq:{q}:unique:<type>:<md5> (only when ARGV[5] ~= "0")
-- ARGV[1] encoded TaskMessage
-- ARGV[2] task id
-- ARGV[3] now, Unix nanoseconds (pending_since)
-- ARGV[4] process at, Unix seconds ("0": now)
-- ARGV[5] uniqueness TTL in seconds ("0": not unique)
-- Returns 1 enqueued, 0 the id exists, -1 a duplicate holds the unique lock.
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
if ARGV[5] ~= "0" then
  if not redis.call("SET", KEYS[4], ARGV[2], "NX", "EX", ARGV[5]) then
    return -1
  end
  redis.call("HSET", KEYS[1], "unique_key", KEYS[4])
end
if ARGV[4] == "0" then
  redis.call("HSET", KEYS[1], "msg", ARGV[1], "state", "pending", "pending_since", ARGV[3])
  redis.call("LPUSH", KEYS[2], ARGV[2])
  -- One wake token at most, pushed only when none is waiting: under load
  -- (no worker blocked on it) this costs a read, not a write.
  if redis.call("LLEN", KEYS[3]) == 0 then
    redis.call("LPUSH", KEYS[3], "1")
  end
else
  redis.call("HSET", KEYS[1], "msg", ARGV[1], "state", "scheduled")
  redis.call("ZADD", KEYS[2], ARGV[4], ARGV[2])
end
return 1
