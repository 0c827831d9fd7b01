-- Points a task type at a sealed module, ends its canary, records it in the
-- type's history and announces it. Pointing at the version already current
-- does nothing.
-- KEYS[1] wasq:{registry}:current
-- KEYS[2] wasq:{registry}:history:<task type>
-- KEYS[3] wasq:{registry}:canary (a new version ends the type's canary)
-- ARGV[1] task type
-- ARGV[2] the module's SHA-256
-- ARGV[3] the history entry (JSON)
-- ARGV[4] history entries kept
-- ARGV[5] the pub/sub channel
-- Returns the hash it pointed at before ("" for none), or false when the
-- type already ran this version (its canary, if any, still ends).
local before = redis.call("HGET", KEYS[1], ARGV[1])
local ended = redis.call("HDEL", KEYS[3], ARGV[1])
if before == ARGV[2] then
  if ended == 1 then
    redis.call("PUBLISH", ARGV[5], ARGV[1] .. " canary")
  end
  return false
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
redis.call("LPUSH", KEYS[2], ARGV[3])
redis.call("LTRIM", KEYS[2], 0, tonumber(ARGV[4]) - 1)
redis.call("PUBLISH", ARGV[5], ARGV[1] .. " " .. ARGV[2])
return before or ""
