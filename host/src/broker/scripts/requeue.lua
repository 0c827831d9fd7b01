-- Give an unfinished task back (graceful shutdown): active -> pending, at
-- the end that is taken next.
-- KEYS[1] asynq:{q}:active
-- KEYS[2] asynq:{q}:lease
-- KEYS[3] asynq:{q}:pending
-- KEYS[4] asynq:{q}:t:<id>
-- KEYS[5] asynq:{q}:wake
-- ARGV[1] task id
-- ARGV[2] now, Unix nanoseconds
-- ARGV[3] the worker holding the lease (its server id); "" skips the check
-- Returns 1, or 0 when this worker no longer holds the lease.
if not release_lease(KEYS[1], KEYS[2], KEYS[4], ARGV[1], ARGV[3]) then
  return 0
end
redis.call("RPUSH", KEYS[3], ARGV[1])
redis.call("HSET", KEYS[4], "state", "pending", "pending_since", ARGV[2])
redis.call("HDEL", KEYS[4], "lease_owner")
wake(KEYS[5])
return 1
