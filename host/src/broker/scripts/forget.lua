-- A lease whose task hash is gone (deleted by hand, say): its id leaves the
-- lease set and the active list, so it no longer holds up recovery.
-- KEYS[1] asynq:{q}:active
-- KEYS[2] asynq:{q}:lease
-- KEYS[3] asynq:{q}:t:<id>
-- ARGV[1] task id
-- ARGV[2] now, Unix seconds: act only if the lease expired by then
-- Returns 1, or 0 when the hash exists or the lease is gone or still alive.
if redis.call("EXISTS", KEYS[3]) == 1 then
  return 0
end
local lease = redis.call("ZSCORE", KEYS[2], ARGV[1])
if not lease or tonumber(lease) > tonumber(ARGV[2]) then
  return 0
end
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("LREM", KEYS[1], 0, ARGV[1])
return 1
