-- Adds a task to a group of its queue, to be aggregated with the group's
-- other tasks into one (Asynq's AddToGroup and AddToGroupUnique, with
-- Asynq's keys and fields, so Asynq's tools list it as aggregating).
-- KEYS[1] asynq:{q}:t:<id>
-- KEYS[2] asynq:{q}:g:<group>
-- KEYS[3] asynq:{q}:groups
-- KEYS[4] the unique lock asynq:{q}:unique:<type>:<md5> (unique tasks only)
-- ARGV[1] the encoded TaskMessage
-- ARGV[2] the task id
-- ARGV[3] now, Unix seconds (the task's score in the group)
-- ARGV[4] the group's name
-- ARGV[5] the uniqueness TTL in seconds (unique tasks only)
-- Returns 1 added, 0 the id exists, -1 a duplicate holds the unique lock.
if KEYS[4] and not redis.call("SET", KEYS[4], ARGV[2], "NX", "EX", ARGV[5]) then
  return -1
end
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
redis.call("HSET", KEYS[1], "msg", ARGV[1], "state", "aggregating", "group", ARGV[4])
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[2])
redis.call("SADD", KEYS[3], ARGV[4])
return 1
