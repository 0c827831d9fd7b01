-- Delete completed tasks whose retention is over.
-- KEYS[1] asynq:{q}:completed
-- KEYS[1+i] asynq:{q}:t:<ARGV[1+i]>
-- ARGV[1] now, Unix seconds
-- ARGV[2..] task ids
local deleted = 0
for i = 2, #ARGV do
  local score = redis.call("ZSCORE", KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[1]) then
    redis.call("ZREM", KEYS[1], ARGV[i])
    redis.call("DEL", KEYS[i])
    deleted = deleted + 1
  end
end
return deleted
