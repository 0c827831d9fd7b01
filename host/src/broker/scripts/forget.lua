-- An expired lease whose task cannot be recovered the usual way: its hash is
-- gone (deleted by hand, say), or has no `msg`. The id leaves the lease set
-- and the active list (and a hash without `msg` is archived as it is), so
-- it no longer holds up the queue's recovery.
-- KEYS[1] asynq:{q}:active
-- KEYS[2] asynq:{q}:lease
-- KEYS[3] asynq:{q}:t:<id>
-- KEYS[4] asynq:{q}:archived
-- ARGV[1] task id
-- ARGV[2] now, Unix seconds: act only if the lease expired by then
-- Returns 1 the lease was dropped (no hash), 2 the hash was archived, or 0
-- when the lease is gone or still alive, or the hash has a `msg`.
local lease = redis.call("ZSCORE", KEYS[2], ARGV[1])
if not lease or tonumber(lease) > tonumber(ARGV[2]) then
  return 0
end
local exists = redis.call("EXISTS", KEYS[3]) == 1
if exists and redis.call("HEXISTS", KEYS[3], "msg") == 1 then
  return 0
end
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("LREM", KEYS[1], 0, ARGV[1])
if not exists then
  return 1
end
redis.call("ZADD", KEYS[4], ARGV[2], ARGV[1])
redis.call("HSET", KEYS[3], "state", "archived")
redis.call("HDEL", KEYS[3], "lease_owner")
return 2
