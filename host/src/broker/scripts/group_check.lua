-- Whether a group is due to be aggregated and, if it is, takes its oldest
-- tasks (up to the max size) into a new aggregation set (Asynq's
-- AggregationCheck: the same keys, rules and return values, so Asynq's
-- recoverer can reclaim wasq's sets and the other way round). A group is
-- due when it holds max_size tasks, when its oldest task waited max_delay,
-- or when no task joined it for the grace period.
-- KEYS[1] asynq:{q}:g:<group>
-- KEYS[2] asynq:{q}:g:<group>:<new set id>
-- KEYS[3] asynq:{q}:aggregation_sets
-- KEYS[4] asynq:{q}:groups
-- ARGV[1] max size (0: none)
-- ARGV[2] max delay in seconds (0: none)
-- ARGV[3] grace period in seconds
-- ARGV[4] when the set counts as abandoned, Unix seconds
-- ARGV[5] now, Unix seconds
-- ARGV[6] the group's name
-- Returns 1 when a set was made, 0 when the group is not due (or empty).
local size = redis.call("ZCARD", KEYS[1])
if size == 0 then
  return 0
end
local max_size = tonumber(ARGV[1])
local max_delay = tonumber(ARGV[2])
local grace = tonumber(ARGV[3])
local now = tonumber(ARGV[5])

-- The oldest max_size tasks (all of them without a max size) into the set,
-- with their scores; the group's name leaves the list of groups when no
-- task is left in it.
local function take()
  local last = -1
  if max_size > 0 then
    last = max_size - 1
  end
  local members = redis.call("ZRANGE", KEYS[1], 0, last, "WITHSCORES")
  for i = 1, #members, 2 do
    redis.call("ZADD", KEYS[2], members[i + 1], members[i])
  end
  redis.call("ZREMRANGEBYRANK", KEYS[1], 0, last)
  redis.call("ZADD", KEYS[3], ARGV[4], KEYS[2])
  if max_size == 0 or size <= max_size then
    redis.call("SREM", KEYS[4], ARGV[6])
  end
  return 1
end

if max_size > 0 and size >= max_size then
  return take()
end
if max_delay > 0 then
  local oldest = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
  if tonumber(oldest[2]) <= now - max_delay then
    return take()
  end
end
local newest = redis.call("ZREVRANGE", KEYS[1], 0, 0, "WITHSCORES")
if tonumber(newest[2]) <= now - grace then
  return take()
end
return 0
