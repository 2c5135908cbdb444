-- Acknowledge entries of several streams for one consumer group in one call (src/runtime/group-acks.ts:
-- the acknowledgements an outbox reader group makes in one turn of the event loop, over many
-- shards), instead of one XACK per stream.
-- KEYS the streams
-- ARGV[1] the consumer group
-- ARGV[2..1+#KEYS] how many ids of each stream follow, then the ids, stream after stream
-- Returns how many entries were acknowledged.
local n = #KEYS
local p = 2 + n
local acked = 0
for i = 1, n do
  local c = tonumber(ARGV[1 + i])
  if c > 0 then
    acked = acked + redis.call('XACK', KEYS[i], ARGV[1], unpack(ARGV, p, p + c - 1))
  end
  p = p + c
end
return acked
