-- Enqueue one tick of a periodic entry into its queue, at most once however
-- many schedulers ask: the queue keeps the latest tick enqueued per entry,
-- and a tick at or before it is never enqueued again (the tick's task may
-- have run and been deleted since).
-- KEYS[1] asynq:{q}:pending
-- KEYS[2] asynq:{q}:wake
-- KEYS[3] asynq:{q}:t:<id>
-- KEYS[4] asynq:{q}:cron:<entry>
-- ARGV[1] the encoded TaskMessage, ARGV[2] its id, ARGV[3] the tick (Unix
--         seconds), ARGV[4] "1" when the tick is due now, "0" when it is
--         one that passed while no scheduler ran, ARGV[5] the catch-up
--         policy ("last" or "skip"), ARGV[6] the enqueue's time in Unix
--         nanoseconds (pending_since)
-- Returns 1 enqueued, 0 this tick (or a later one) was enqueued already,
-- -1 a missed tick left out (catch-up "skip", or an entry that never ran).
local tick = tonumber(ARGV[3])
local last = redis.call("GET", KEYS[4])
if last and tonumber(last) >= tick then
  return 0
end
if ARGV[4] ~= "1" and (ARGV[5] ~= "last" or not last) then
  return -1
end
redis.call("SET", KEYS[4], ARGV[3])
if redis.call("EXISTS", KEYS[3]) == 1 then
  return 0
end
redis.call("HSET", KEYS[3], "msg", ARGV[1], "state", "pending", "pending_since", ARGV[6])
redis.call("LPUSH", KEYS[1], ARGV[2])
wake(KEYS[2])
return 1
