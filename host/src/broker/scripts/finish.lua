-- A task ends well: deleted, or kept as completed for its retention.
-- KEYS[1] asynq:{q}:active
-- KEYS[2] asynq:{q}:lease
-- KEYS[3] asynq:{q}:t:<id>
-- KEYS[4] asynq:{q}:completed
-- KEYS[5] asynq:{q}:processed:<date>
-- KEYS[6] asynq:{q}:processed
-- KEYS[7] the task's unique lock key (optional)
-- ARGV[1] task id
-- ARGV[2] delete-at, Unix seconds ("0": delete now)
-- ARGV[3] updated TaskMessage (with completed_at) when kept
-- ARGV[4] result bytes when kept
-- ARGV[5] daily counter expiry, Unix seconds
-- ARGV[6] the worker holding the lease (its server id); "" skips the check
-- ARGV[7] "" or the SHA-256 of the module version it ran on, kept with it
-- Returns 1, or 0 when this worker no longer holds the lease.
if not release_lease(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[6]) then
  return 0
end
if ARGV[2] == "0" then
  redis.call("DEL", KEYS[3])
else
  redis.call("ZADD", KEYS[4], ARGV[2], ARGV[1])
  redis.call("HSET", KEYS[3], "msg", ARGV[3], "state", "completed", "result", ARGV[4])
  redis.call("HDEL", KEYS[3], "lease_owner")
  if ARGV[7] and ARGV[7] ~= "" then
    redis.call("HSET", KEYS[3], "module", ARGV[7])
  end
end
if KEYS[7] and redis.call("GET", KEYS[7]) == ARGV[1] then
  redis.call("DEL", KEYS[7])
end
count_daily(KEYS[5], ARGV[5])
redis.call("INCR", KEYS[6])
return 1
