-- Move due tasks from the scheduled or retry set to pending. The caller
-- peeks at the due ids first, so every task key touched is declared.
-- KEYS[1] asynq:{q}:scheduled or asynq:{q}:retry
-- KEYS[2] asynq:{q}:pending
-- KEYS[3] asynq:{q}:wake
-- KEYS[3+i] asynq:{q}:t:<ARGV[2+i]>
-- ARGV[1] now, Unix seconds
-- ARGV[2] now, Unix nanoseconds
-- ARGV[3..] task ids
-- Returns how many moved.
local moved = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local score = redis.call("ZSCORE", KEYS[1], id)
  if score and tonumber(score) <= tonumber(ARGV[1]) then
    redis.call("ZREM", KEYS[1], id)
    redis.call("LPUSH", KEYS[2], id)
    redis.call("HSET", KEYS[1 + i], "state", "pending", "pending_since", ARGV[2])
    moved = moved + 1
  end
end
if moved > 0 then
  wake(KEYS[3])
end
return moved
