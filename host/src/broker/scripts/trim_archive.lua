-- Trims a queue's archive, as Asynq does: archived tasks older than the
-- cutoff, and the oldest past the most kept, leave the archive and their
-- hashes are deleted.
-- KEYS[1] asynq:{q}:archived
-- KEYS[2..] asynq:{q}:t:<id> of each id in ARGV[3..]
-- ARGV[1] cutoff, Unix seconds: archived before it goes
-- ARGV[2] most archived tasks kept
-- ARGV[3..] ids the caller peeked at (the oldest); each is checked again
-- Returns how many were deleted.
local cutoff, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local over = redis.call("ZCARD", KEYS[1]) - keep
local deleted = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local score = redis.call("ZSCORE", KEYS[1], id)
  if score and (tonumber(score) < cutoff or over > 0) then
    redis.call("ZREM", KEYS[1], id)
    redis.call("DEL", KEYS[i - 1])
    over = over - 1
    deleted = deleted + 1
  end
end
return deleted
