-- Starts, changes or ends a task type's canary: a share of its tasks run
-- another version than the current one. Recorded in the type's history and
-- announced.
-- KEYS[1] wasq:{registry}:canary
-- KEYS[2] wasq:{registry}:history:<task type>
-- KEYS[3] wasq:{registry}:current
-- ARGV[1] task type
-- ARGV[2] the canary (JSON), or "" to end it
-- ARGV[3] the history entry (JSON)
-- ARGV[4] history entries kept
-- ARGV[5] the pub/sub channel
-- ARGV[6] the canary's SHA-256 ("" when ending it)
-- Returns 1; 0 when ending a canary that does not exist; -1 when the
-- canary is the type's current version (a push of it came first).
if ARGV[2] == "" then
  if redis.call("HDEL", KEYS[1], ARGV[1]) == 0 then
    return 0
  end
elseif redis.call("HGET", KEYS[3], ARGV[1]) == ARGV[6] then
  return -1
else
  redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
end
redis.call("LPUSH", KEYS[2], ARGV[3])
redis.call("LTRIM", KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call("PUBLISH", ARGV[5], ARGV[1] .. " canary")
return 1
