-- The first half of a worker's inbox read (src/runtime/group-reads.ts): sent in one MULTI with
-- the read itself, a plain `XREADGROUP ... STREAMS <inbox…> > …` that follows it, so that nothing
-- happens in Redis between the two. For each shard it gives the entries of the inbox that were
-- delivered above `after` (the last entry id the shard's runner was given) and are still pending,
-- for any consumer. In steady state there are none: one seek in the group's pending list, and the
-- new entries go straight from XREADGROUP to the worker, not through Lua (converting them to Lua
-- and back cost more than the read itself).
-- Such entries are why this runs before every read:
-- - a read of this consumer whose answer never reached the worker (the connection dropped after
--   Redis ran it): its entries are pending for this consumer and nobody tracks them;
-- - a read by a holder that stalled past its lease and read on after the shard was taken: its
--   entries are pending for that consumer, which can no longer commit them (commits are fenced).
-- Both were delivered before the entries this read's XREADGROUP gives (the group's last-delivered
-- id only grows), so they are given first, and the actor's messages stay in order. Another
-- consumer's entries are claimed by this one first (XCLAIM: their delivery count grows by one).
-- A pending entry that was trimmed away is acknowledged here, as XAUTOCLAIM reports them.
-- KEYS: the shards' inbox streams
-- ARGV[1] the inbox consumer group
-- ARGV[2] the consumer: the worker id
-- ARGV[3] at most this many entries per shard
-- ARGV[3 + i] the last entry id shard i's runner was given, prefixed with '(' ('(0-0': none)
-- Returns one reply per shard:
--   0                      nothing pending above it (steady state)
--   {'p', entries, counts, rows} the pending entries above it, {id, fields} in id order, their
--                          delivery counts in the same order, and how many pending rows were
--                          seen (trimmed ones included; `count` of them: there may be more)
--   {'e', message}         a command failed for this shard (no group, a key of the wrong type)
local group, consumer, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS do
  local inbox = KEYS[i]
  local pend = redis.pcall('XPENDING', inbox, group, ARGV[3 + i], '+', count)
  if pend.err then
    out[i] = {'e', pend.err}
  elseif #pend == 0 then
    out[i] = 0
  else
    local entries, counts = {}, {}
    for _, row in ipairs(pend) do
      local id = row[1]
      local e
      if row[2] == consumer then
        e = redis.call('XRANGE', inbox, id, id)
        if #e > 0 then counts[#counts + 1] = row[4] end
      else
        e = redis.call('XCLAIM', inbox, group, consumer, 0, id)
        if #e > 0 then counts[#counts + 1] = row[4] + 1 end
      end
      if #e == 0 then
        redis.call('XACK', inbox, group, id)
      else
        entries[#entries + 1] = e[1]
      end
    end
    -- #pend: the rows seen; `count` of them means more may be pending above the last one, and
    -- then the caller must not hand on this read's new entries (they would jump over those).
    out[i] = {'p', entries, counts, #pend}
  end
end
return out
