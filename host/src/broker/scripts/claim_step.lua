-- The claim step, prepended to claim.lua and finish_many.lua (so both run
-- one implementation): pending -> active with a lease for this worker.
--
-- The caller names the ids it expects at the pending list's tail (from a
-- peek, or the hint the previous claim returned), so every task key touched
-- here is declared. When the tail is still exactly those ids (the usual
-- case) they are taken in one LTRIM. Otherwise another worker got there
-- first: only ids whose task is still pending are taken, one by one, so ids
-- already gone never cost a scan of the list.
--
-- keys[i] is the task key of ids[i] (ids oldest first); h is how many ids to
-- return as the hint for the next claim. Returns claimed (id1, msg1, id2,
-- msg2, ..., "" for a lost msg) and the hint (the ids now at the tail,
-- LRANGE order, oldest last).
local function claim_step(pending, paused, active, lease, keys, ids, expiry, owner, h)
  local n = #ids
  if n == 0 then
    if h > 0 then
      return {}, redis.call("LRANGE", pending, -h, -1)
    end
    return {}, {}
  end
  if redis.call("EXISTS", paused) == 1 then
    return {}, {}
  end
  local taken = {}
  -- One read for both the tail to check and the hint behind it.
  local seen = redis.call("LRANGE", pending, -(n + h), -1)
  local m = #seen
  local intact = m >= n
  if intact then
    for i = 1, n do
      -- The list reads newest first; ids are oldest first.
      if seen[m + 1 - i] ~= ids[i] then
        intact = false
        break
      end
    end
  end
  local hint = {}
  if intact then
    redis.call("LTRIM", pending, 0, -(n + 1))
    for i = 1, n do
      taken[i] = i
    end
    for i = 1, m - n do
      hint[i] = seen[i]
    end
  else
    for i = 1, n do
      if redis.call("HGET", keys[i], "state") == "pending"
        and redis.call("LREM", pending, "-1", ids[i]) == 1 then
        taken[#taken + 1] = i
      end
    end
    if h > 0 then
      hint = redis.call("LRANGE", pending, -h, -1)
    end
  end
  local out = {}
  if #taken > 0 then
    local moved = {}
    local scores = {}
    for _, i in ipairs(taken) do
      moved[#moved + 1] = ids[i]
      scores[#scores + 1] = expiry
      scores[#scores + 1] = ids[i]
      redis.call("HSET", keys[i], "state", "active", "lease_owner", owner)
      out[#out + 1] = ids[i]
      out[#out + 1] = redis.call("HGET", keys[i], "msg") or ""
    end
    redis.call("LPUSH", active, unpack(moved))
    redis.call("ZADD", lease, unpack(scores))
  end
  return out, hint
end
