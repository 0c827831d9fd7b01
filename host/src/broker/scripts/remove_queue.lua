-- Removes an emptied queue's lists, sets and counters, only if it is still
-- empty (no task arrived or started since its tasks were deleted).
-- KEYS[1] asynq:{q}:active
-- KEYS[2] asynq:{q}:lease
-- KEYS[3] asynq:{q}:pending
-- KEYS[4..7] asynq:{q}:scheduled, :retry, :archived, :completed
-- KEYS[8..] the rest to delete: :paused, :processed, :failed, :wake, :limit
--          and the daily counters
-- Returns 1 removed, -1 a task is active, -2 a task arrived meanwhile.
if redis.call("LLEN", KEYS[1]) > 0 or redis.call("ZCARD", KEYS[2]) > 0 then
  return -1
end
if redis.call("LLEN", KEYS[3]) > 0 then
  return -2
end
for i = 4, 7 do
  if redis.call("ZCARD", KEYS[i]) > 0 then
    return -2
  end
end
redis.call("DEL", unpack(KEYS))
return 1
