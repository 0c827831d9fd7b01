-- A task revoked by its handler: deleted, counted as processed.
-- KEYS[1] asynq:{q}:active
-- KEYS[2] asynq:{q}:lease
-- KEYS[3] asynq:{q}:t:<id>
-- KEYS[4] asynq:{q}:processed:<date>
-- KEYS[5] asynq:{q}:processed
-- KEYS[6] the task's unique lock key (optional): released if this task holds it
-- ARGV[1] task id
-- ARGV[2] daily counter expiry, Unix seconds
-- ARGV[3] the worker holding the lease (its server id); "" skips the check
-- Returns 1, or 0 when this worker no longer holds the lease.
if not release_lease(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[3]) then
  return 0
end
redis.call("DEL", KEYS[3])
if KEYS[6] and redis.call("GET", KEYS[6]) == ARGV[1] then
  redis.call("DEL", KEYS[6])
end
count_daily(KEYS[4], ARGV[2])
redis.call("INCR", KEYS[5])
return 1
