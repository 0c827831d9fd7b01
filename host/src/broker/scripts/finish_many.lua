-- Many tasks of one queue end well and are deleted: one call acknowledges a
-- batch (tasks without retention or a unique lock).
-- KEYS[1] asynq:{q}:active
-- KEYS[2] asynq:{q}:lease
-- KEYS[3] asynq:{q}:processed:<date>
-- KEYS[4] asynq:{q}:processed
-- KEYS[4+i] asynq:{q}:t:<ARGV[1+i]>
-- ARGV[1] daily counter expiry, Unix seconds
-- ARGV[2..] task ids
-- Returns, per id, 1 when acknowledged or 0 when its lease was gone.
local n = #ARGV - 1
local out = {}
local ids = {}
local keys = {}
local all = redis.call("ZREM", KEYS[2], unpack(ARGV, 2)) == n
for i = 1, n do
  -- When some leases were gone, tell which: those ids are no longer active.
  local held = all or redis.call("LPOS", KEYS[1], ARGV[1 + i]) ~= false
  if held then
    out[i] = 1
    ids[#ids + 1] = ARGV[1 + i]
    keys[#keys + 1] = KEYS[4 + i]
  else
    out[i] = 0
  end
end
for _, id in ipairs(ids) do
  redis.call("LREM", KEYS[1], -1, id)
end
if #keys > 0 then
  redis.call("DEL", unpack(keys))
  if redis.call("INCRBY", KEYS[3], #keys) == #keys then
    redis.call("EXPIREAT", KEYS[3], ARGV[1])
  end
  redis.call("INCRBY", KEYS[4], #keys)
end
return out
