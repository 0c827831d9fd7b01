-- An operator moves tasks of one queue by hand: deletes them, archives them
-- or runs them now. Each task must still be in the source state.
-- KEYS[1] the source: asynq:{q}:pending (list), or :scheduled, :retry,
--         :archived or :completed (zset)
-- KEYS[2] the destination: asynq:{q}:archived (zset) to archive,
--         asynq:{q}:pending (list) to run; unused to delete
-- KEYS[3] asynq:{q}:wake
-- KEYS[4..] per id: asynq:{q}:t:<id>, then its unique lock key when the
--         id's flag in ARGV is "1"
-- ARGV[1] "list" or "zset": the source's type
-- ARGV[2] "delete", "archive" or "run"
-- ARGV[3] the source state, checked on every task
-- ARGV[4] now, Unix seconds
-- ARGV[5] now, Unix nanoseconds
-- ARGV[6..] pairs: task id, "1" when a unique lock key follows its task key
-- Returns how many tasks moved.
local moved = 0
local k = 4
for i = 6, #ARGV, 2 do
  local id = ARGV[i]
  local key = KEYS[k]
  local lock = nil
  k = k + 1
  if ARGV[i + 1] == "1" then
    lock = KEYS[k]
    k = k + 1
  end
  if redis.call("HGET", key, "state") == ARGV[3] then
    local removed
    if ARGV[1] == "list" then
      removed = redis.call("LREM", KEYS[1], 0, id)
    else
      removed = redis.call("ZREM", KEYS[1], id)
    end
    if removed > 0 then
      moved = moved + 1
      if ARGV[2] == "delete" then
        redis.call("DEL", key)
        if lock and redis.call("GET", lock) == id then
          redis.call("DEL", lock)
        end
      elseif ARGV[2] == "archive" then
        redis.call("ZADD", KEYS[2], ARGV[4], id)
        redis.call("HSET", key, "state", "archived")
      else
        redis.call("LPUSH", KEYS[2], id)
        redis.call("HSET", key, "state", "pending", "pending_since", ARGV[5])
      end
    end
  end
end
if ARGV[2] == "run" and moved > 0 then
  wake(KEYS[3])
end
return moved
