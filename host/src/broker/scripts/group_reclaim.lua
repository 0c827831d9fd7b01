-- Puts the tasks of an abandoned aggregation set (its aggregator died
-- between taking the set and writing the aggregated task) back into their
-- group, with their scores, to be aggregated again (Asynq's
-- ReclaimStaleAggregationSets, one set per call so every key is declared;
-- the group's name also goes back into the list of groups, where Asynq
-- leaves it out).
-- KEYS[1] asynq:{q}:aggregation_sets
-- KEYS[2] asynq:{q}:g:<group>:<set id>
-- KEYS[3] asynq:{q}:g:<group>
-- KEYS[4] asynq:{q}:groups
-- ARGV[1] now, Unix seconds
-- ARGV[2] the group's name
-- Returns the number of tasks put back, or -1 when the set is not
-- abandoned (any more).
local deadline = redis.call("ZSCORE", KEYS[1], KEYS[2])
if not deadline or tonumber(deadline) > tonumber(ARGV[1]) then
  return -1
end
local members = redis.call("ZRANGE", KEYS[2], 0, -1, "WITHSCORES")
for i = 1, #members, 2 do
  redis.call("ZADD", KEYS[3], members[i + 1], members[i])
end
if #members > 0 then
  redis.call("SADD", KEYS[4], ARGV[2])
end
redis.call("DEL", KEYS[2])
redis.call("ZREM", KEYS[1], KEYS[2])
return #members / 2
