-- An aggregation set becomes one pending task: in one step, the task that
-- aggregates the set is written and pushed to pending, and the set and its
-- tasks are deleted. Nothing is written when the set is gone or was
-- reclaimed (its tasks went back to their group): each task of a group
-- ends in exactly one aggregated task.
-- KEYS[1] asynq:{q}:g:<group>:<set id>
-- KEYS[2] asynq:{q}:aggregation_sets
-- KEYS[3] asynq:{q}:pending
-- KEYS[4] asynq:{q}:wake
-- KEYS[5] asynq:{q}:t:<aggregated task id>
-- KEYS[5+i] asynq:{q}:t:<member i>
-- ARGV[1] the aggregated task's encoded TaskMessage
-- ARGV[2] its id
-- ARGV[3] the enqueue's time, Unix nanoseconds (pending_since)
-- ARGV[4] how many members the caller read from the set
-- Returns 1 done, 0 the set is gone (or changed since it was read).
if not redis.call("ZSCORE", KEYS[2], KEYS[1]) then
  return 0
end
if redis.call("ZCARD", KEYS[1]) ~= tonumber(ARGV[4]) then
  return 0
end
if redis.call("EXISTS", KEYS[5]) == 0 then
  redis.call("HSET", KEYS[5], "msg", ARGV[1], "state", "pending", "pending_since", ARGV[3])
  redis.call("LPUSH", KEYS[3], ARGV[2])
  wake(KEYS[4])
end
for i = 6, #KEYS do
  redis.call("DEL", KEYS[i])
end
redis.call("DEL", KEYS[1])
redis.call("ZREM", KEYS[2], KEYS[1])
return 1
