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
-- The queue's limits, when it has any, are decided here, in the queue's
-- slot, so no number of workers can overshoot them (see limit_allows).
--
-- keys[i] is the task key of ids[i] (ids oldest first); h is how many ids to
-- return as the hint for the next claim; lim is {rate, burst, max_running}
-- (0 for a limit not set) and limit the queue's limit hash. Returns claimed
-- (id1, msg1, id2, msg2, ..., "" for a lost msg), the hint (the ids now at
-- the tail, LRANGE order, oldest last) and held (0: no limit bound; -1:
-- max_running did; > 0: the rate did, and a token is due in that many ms).

-- How many of n tasks the limits let start now, and why not more.
--
-- max_running counts the queue's active list across all workers: a crashed
-- worker's tasks count until their leases expire and recovery moves them
-- back to pending. The rate is a token bucket in the limit hash (`tokens`,
-- refilled at `rate` a second up to `burst`, as of `at` in microseconds of
-- the Redis server's clock, so the workers' clocks do not matter). Returns
-- allowed, held (as above) and, for the rate, the bucket as of now (tokens,
-- now) for limit_spend.
local function limit_allows(limit, active, n, lim)
  local allowed = n
  local held = 0
  local tokens, now
  if lim[3] > 0 then
    local free = lim[3] - redis.call("LLEN", active)
    if free < allowed then
      allowed = math.max(free, 0)
      held = -1
      redis.call("HINCRBY", limit, "deferred_running", n - allowed)
    end
  end
  if lim[1] > 0 and allowed > 0 then
    local t = redis.call("TIME")
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local state = redis.call("HMGET", limit, "tokens", "at")
    tokens = tonumber(state[1]) or lim[2]
    local at = tonumber(state[2]) or now
    if now > at then
      tokens = math.min(lim[2], tokens + (now - at) * lim[1] / 1000000)
    end
    local whole = math.floor(tokens)
    if whole < allowed then
      redis.call("HINCRBY", limit, "deferred_rate", allowed - whole)
      allowed = whole
      held = math.max(1, math.ceil((1 - (tokens - whole)) * 1000 / lim[1]))
    end
  end
  return allowed, held, tokens, now
end

-- Takes k started tasks' tokens from the bucket limit_allows read.
local function limit_spend(limit, tokens, now, k)
  if now and k > 0 then
    -- Formatted by hand: tostring keeps only 14 digits.
    redis.call("HSET", limit, "tokens", string.format("%.17g", tokens - k),
      "at", string.format("%.0f", now))
  end
end

local function claim_step(pending, paused, active, lease, keys, ids, expiry, owner, h,
                          limit, lim)
  local n = #ids
  if n == 0 then
    if h > 0 then
      return {}, redis.call("LRANGE", pending, -h, -1), 0
    end
    return {}, {}, 0
  end
  if redis.call("EXISTS", paused) == 1 then
    return {}, {}, 0
  end
  local allowed, held, tokens, now = limit_allows(limit, active, n, lim)
  if allowed < n then
    -- Only the oldest `allowed`: the rest stay pending, untouched.
    n = allowed
    if n == 0 then
      if h > 0 then
        return {}, redis.call("LRANGE", pending, -h, -1), held
      end
      return {}, {}, held
    end
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
    -- Under a rate, when the limiter let the tasks start (ms, Redis's
    -- clock): the record that the rate held. The same for the whole claim.
    local claimed_at = now and string.format("%.0f", math.floor(now / 1000))
    for _, i in ipairs(taken) do
      moved[#moved + 1] = ids[i]
      scores[#scores + 1] = expiry
      scores[#scores + 1] = ids[i]
      if claimed_at then
        redis.call("HSET", keys[i], "state", "active", "lease_owner", owner,
          "claimed_at", claimed_at)
      else
        redis.call("HSET", keys[i], "state", "active", "lease_owner", owner)
      end
      out[#out + 1] = ids[i]
      out[#out + 1] = redis.call("HGET", keys[i], "msg") or ""
    end
    redis.call("LPUSH", active, unpack(moved))
    redis.call("ZADD", lease, unpack(scores))
  end
  limit_spend(limit, tokens, now, #taken)
  return out, hint, held
end
