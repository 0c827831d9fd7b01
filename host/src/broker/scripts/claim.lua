-- Claim pending tasks for this worker (see claim_step above).
-- KEYS[1] asynq:{q}:pending
-- KEYS[2] asynq:{q}:paused
-- KEYS[3] asynq:{q}:active
-- KEYS[4] asynq:{q}:lease
-- KEYS[4+i] asynq:{q}:t:<ARGV[3+i]>
-- ARGV[1] lease expiry, Unix seconds
-- ARGV[2] the claiming worker (its server id), kept as the lease's owner
-- ARGV[3] how many ids to return as the hint for the next claim
-- ARGV[4..] task ids, oldest first
-- Returns {claimed, hint} as claim_step does.
local keys = {}
local ids = {}
for i = 1, #ARGV - 3 do
  keys[i] = KEYS[4 + i]
  ids[i] = ARGV[3 + i]
end
local claimed, hint = claim_step(KEYS[1], KEYS[2], KEYS[3], KEYS[4], keys, ids,
  ARGV[1], ARGV[2], tonumber(ARGV[3]))
return {claimed, hint}
