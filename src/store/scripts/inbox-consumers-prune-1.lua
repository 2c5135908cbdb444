-- A shard's new holder, once it has claimed every pending entry of the inbox (ShardRunner.start),
-- deletes the group's other consumers that hold nothing: workers that held the shard before. A
-- consumer is never deleted otherwise, and worker ids are per process, so every restart left one
-- more per inbox; the push check of enqueue-many-6.lua (XPENDING's summary) and XINFO walk them
-- all. A consumer with pending entries is kept (deleting it would drop them from the pending list:
-- lost); the check and the delete are one script, so none can be read in between. A stale holder
-- that reads again is a consumer again (XREADGROUP creates it), as before.
-- KEYS[1] the inbox stream
-- ARGV[1] the inbox consumer group
-- ARGV[2] the new holder's consumer name (kept)
-- Returns how many consumers were deleted.
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local deleted = 0
for _, c in ipairs(consumers) do
  local name, pending
  for j = 1, #c, 2 do
    if c[j] == 'name' then name = c[j + 1] elseif c[j] == 'pending' then pending = c[j + 1] end
  end
  if name and name ~= ARGV[2] and pending == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
    deleted = deleted + 1
  end
end
return deleted
