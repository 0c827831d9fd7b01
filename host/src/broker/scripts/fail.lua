-- A task failed: to the retry set, or to the archive.
-- KEYS[1] asynq:{q}:active
-- KEYS[2] asynq:{q}:lease
-- KEYS[3] asynq:{q}:t:<id>
-- KEYS[4] asynq:{q}:retry or asynq:{q}:archived
-- KEYS[5] asynq:{q}:processed:<date>
-- KEYS[6] asynq:{q}:failed:<date>
-- KEYS[7] asynq:{q}:processed
-- KEYS[8] asynq:{q}:failed
-- ARGV[1] task id
-- ARGV[2] updated TaskMessage (retried, error_msg, last_failed_at)
-- ARGV[3] score: retry-at or archived-at, Unix seconds
-- ARGV[4] new state: "retry" or "archived"
-- ARGV[5] daily counter expiry, Unix seconds
-- ARGV[6] "" or, when recovering an abandoned task, the current Unix time:
--         act only if the lease expired by then
-- ARGV[7] the worker holding the lease (its server id); "" skips the check
-- ARGV[8] "" or why the task cannot run as it is (its msg does not decode,
--         or names another queue): kept in the hash's `invalid` field
-- ARGV[9] "1" to count the failure in the processed and failed counters,
--         "0" when the task did not fail (the host could not run it)
-- ARGV[10] "" or the SHA-256 of the module version it ran on (`module`)
-- Returns 1, or 0 when the lease is gone or another worker's (or, recovering,
-- still alive).
local owner = redis.call("HGET", KEYS[3], "lease_owner")
if ARGV[7] ~= "" and owner and owner ~= ARGV[7] then
  return 0
end
local lease = redis.call("ZSCORE", KEYS[2], ARGV[1])
if not lease then
  return 0
end
if ARGV[6] ~= "" and tonumber(lease) > tonumber(ARGV[6]) then
  return 0
end
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("LREM", KEYS[1], 0, ARGV[1])
redis.call("ZADD", KEYS[4], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[3], "msg", ARGV[2], "state", ARGV[4])
redis.call("HDEL", KEYS[3], "lease_owner")
if ARGV[8] ~= "" then
  redis.call("HSET", KEYS[3], "invalid", ARGV[8])
end
if ARGV[10] and ARGV[10] ~= "" then
  redis.call("HSET", KEYS[3], "module", ARGV[10])
end
if ARGV[9] == "1" then
  count_daily(KEYS[5], ARGV[5])
  count_daily(KEYS[6], ARGV[5])
  redis.call("INCR", KEYS[7])
  redis.call("INCR", KEYS[8])
end
return 1
