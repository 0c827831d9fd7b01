-- Claim pending tasks for this worker (see claim_step above).
-- KEYS[1] asynq:{q}:pending
-- KEYS[2] asynq:{q}:paused
-- KEYS[3] asynq:{q}:active
-- KEYS[4] asynq:{q}:lease
-- KEYS[5] asynq:{q}:limit
-- KEYS[5+i] asynq:{q}:t:<ARGV[6+i]>
-- ARGV[1] lease expiry, Unix seconds
-- ARGV[2] the claiming worker (its server id), kept as the lease's owner
-- ARGV[3] how many ids to return as the hint for the next claim
-- ARGV[4..6] the queue's limits: rate (tasks a second), burst, max_running
--            (0: not set)
-- ARGV[7..] task ids, oldest first
-- Returns {claimed, hint, held} as claim_step does.
local keys = {}
local ids = {}
for i = 1, #ARGV - 6 do
  keys[i] = KEYS[5 + i]
  ids[i] = ARGV[6 + i]
end
local lim = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])}
local claimed, hint, held = claim_step(KEYS[1], KEYS[2], KEYS[3], KEYS[4], keys, ids,
  ARGV[1], ARGV[2], tonumber(ARGV[3]), KEYS[5], lim)
return {claimed, hint, held}
