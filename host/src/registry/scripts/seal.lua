-- Seals an uploaded module: every chunk is there and their lengths add up
-- to the module's size, so the manifest is written and the chunks kept
-- (uploaded chunks expire until then). Safe to repeat.
-- KEYS[1]       wasq:{module:<sha256>}:manifest
-- KEYS[2..n+1]  wasq:{module:<sha256>}:<i>, every chunk in order
-- ARGV[1] size in bytes
-- ARGV[2] chunk size in bytes
-- ARGV[3] now, Unix seconds
-- Returns 1, or an error naming the first missing chunk or the mismatch.
local total = 0
for i = 2, #KEYS do
  local len = redis.call("STRLEN", KEYS[i])
  if len == 0 then
    return redis.error_reply("UNSEALED missing chunk " .. (i - 2) .. " of " .. (#KEYS - 1))
  end
  total = total + len
end
if total ~= tonumber(ARGV[1]) then
  return redis.error_reply("UNSEALED the chunks hold " .. total .. " bytes, the module has " .. ARGV[1])
end
for i = 2, #KEYS do
  redis.call("PERSIST", KEYS[i])
end
redis.call("HSET", KEYS[1], "size", ARGV[1], "chunks", #KEYS - 1,
  "chunk_size", ARGV[2], "sealed_at", ARGV[3])
return 1
