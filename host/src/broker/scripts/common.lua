-- Helpers shared by the scripts, prepended to each one that uses them (see
-- broker/scripts.rs), so each rule is written once.

-- Takes task `id` off the lease set and the active list, when `owner` (a
-- worker's server id; "" skips the check) still holds its lease. False when
-- the lease is gone or another worker's: the caller must then write nothing.
local function release_lease(active, lease, task, id, owner)
  local holder = redis.call("HGET", task, "lease_owner")
  if owner ~= "" and holder and holder ~= owner then
    return false
  end
  if redis.call("ZREM", lease, id) == 0 then
    return false
  end
  redis.call("LREM", active, 0, id)
  return true
end

-- Pushes a wake token for idle workers, only when none is waiting: under
-- load (no worker blocked on it) this costs a read, not a write.
local function wake(key)
  if redis.call("LLEN", key) == 0 then
    redis.call("LPUSH", key, "1")
  end
end

-- Counts one into a daily counter, which expires at `expiry`.
local function count_daily(key, expiry)
  if redis.call("INCR", key) == 1 then
    redis.call("EXPIREAT", key, expiry)
  end
end

