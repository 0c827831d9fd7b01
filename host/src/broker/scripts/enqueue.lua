-- Enqueue tasks into one queue, each pending now or scheduled for later,
-- optionally unique. One call carries one task or many (concurrent enqueues
-- into a queue share a call, see broker/lanes.rs); each task succeeds or
-- fails on its own.
-- KEYS[1] asynq:{q}:pending (list)
-- KEYS[2] asynq:{q}:scheduled (zset)
-- KEYS[3] asynq:{q}:wake
-- KEYS[4..] per task: asynq:{q}:t:<id>, then, only when the task is
--          unique, its lock asynq:{q}:unique:<type>:<md5>, then, only for a
--          unique task with an empty payload, the lock's other form (Asynq
--          writes asynq:{q}:unique:<type>: for a nil payload and appends
--          the digest of "" for an empty one: either one held is a
--          duplicate), then, only for a guest's follow-up task, its sent
--          mark asynq:{q}:sent:<id>
-- ARGV per task, seven values: the encoded TaskMessage, the task id,
--          process at in Unix seconds ("0": now), uniqueness TTL in seconds
--          ("0": not unique), the enqueue's own time in Unix nanoseconds
--          (stored as pending_since; it also marks a replay, below), the
--          sent mark's TTL in seconds ("0": no mark), and "1" when the
--          lock's other form follows the lock ("0" otherwise)
-- Returns one code per task, in order: 1 enqueued (or already enqueued by
-- this very call), 0 the id exists (or its sent mark does: a follow-up
-- that an earlier run of its parent sent, which may have run and gone
-- since), -1 a duplicate holds the unique lock.
local codes = {}
local pushed = {}
local k = 4
for a = 1, #ARGV, 7 do
  local task, msg, id, at, ttl, since, mark_ttl, other_form =
    KEYS[k], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5],
    ARGV[a + 6]
  k = k + 1
  local lock = nil
  if ttl ~= "0" then
    lock = KEYS[k]
    k = k + 1
  end
  local other_lock = nil
  if other_form == "1" then
    other_lock = KEYS[k]
    k = k + 1
  end
  local mark = nil
  if mark_ttl ~= "0" then
    mark = KEYS[k]
    k = k + 1
  end
  local code = 1
  if mark and redis.call("EXISTS", mark) == 1 then
    code = 0
  elseif redis.call("EXISTS", task) == 1 then
    code = 0
    -- The same enqueue sent again after its reply was lost (a dropped
    -- connection): the hash holds this very message, stamped with this
    -- enqueue's time. It is a success; the rewrite of the stamp is a write,
    -- so a durable caller's WAIT also covers the first one.
    if at == "0" and redis.call("HGET", task, "pending_since") == since
      and redis.call("HGET", task, "msg") == msg then
      redis.call("HSET", task, "pending_since", since)
      code = 1
    end
  elseif other_lock and redis.call("EXISTS", other_lock) == 1 then
    code = -1
  elseif lock and not redis.call("SET", lock, id, "NX", "EX", ttl) then
    code = -1
  else
    if lock then
      redis.call("HSET", task, "unique_key", lock)
    end
    if mark then
      redis.call("SET", mark, id, "EX", mark_ttl)
    end
    if at == "0" then
      redis.call("HSET", task, "msg", msg, "state", "pending", "pending_since", since)
      pushed[#pushed + 1] = id
    else
      redis.call("HSET", task, "msg", msg, "state", "scheduled")
      redis.call("ZADD", KEYS[2], at, id)
    end
  end
  codes[#codes + 1] = code
end
if #pushed > 0 then
  -- In call order: the first pushed is the first popped (from the right).
  redis.call("LPUSH", KEYS[1], unpack(pushed))
  wake(KEYS[3])
end
return codes
