-- The inbox reads of a worker's shards in one call (src/runtime/group-reads.ts, ShardRunner), each
-- fenced and each giving first what this consumer already holds untracked.
-- XREADGROUP '>' changes the group: once it ran, its entries are in this consumer's pending list.
-- If its answer never reached the worker (the connection dropped after Redis ran it, and ioredis
-- sent it again: the second run finds nothing new), nothing would track those entries, and the
-- actor's next message would be applied before them. So each shard's read gives first this
-- consumer's own pending entries above the last entry id its runner was given (`after`: in steady
-- state there are none, one seek in the consumer's pending list), then new ones — and a read sent
-- again by ioredis gives what its first run delivered. The pending entries are found with XPENDING
-- and fetched with XRANGE, which leave their delivery counts as they are (an XREADGROUP of the
-- history would add one per read), and their counts are returned.
-- Each shard's lease is checked first, as the commit does: a holder that stalled past its lease
-- and keeps reading after the new holder claimed the pending entries at its start would otherwise
-- take new entries into its own pending list, where nobody tracks them until the idle reclaim.
-- KEYS pairs: a shard's inbox stream, its lease hash
-- ARGV[1] the inbox consumer group
-- ARGV[2] the consumer: the worker id (also the lease owner)
-- ARGV[3] at most this many entries per shard
-- then per shard: its fencing token, the last entry id its runner was given ('0-0': none)
-- Returns one reply per shard:
--   {'ok', entries, counts}  entries {id, fields} in id order: the consumer's own pending entries
--                            above `after` (their delivery counts in counts, in order), then new ones
--   {'stale', owner}         the lease is not this worker's with this token: nothing read
--   {'err', message}         a command failed for this shard (no group, a key of the wrong type):
--                            the other shards' reads go on
-- A pending entry that was trimmed away is acknowledged here, as XAUTOCLAIM reports them.
local group, consumer, count = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n = #KEYS / 2
local out = {}
-- Shards with nothing pending untracked read together: one XREADGROUP names them all.
local plain, byName = {}, {}
for i = 1, n do
  local inbox, lease = KEYS[2 * i - 1], KEYS[2 * i]
  local token, after = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  local f = redis.pcall('HMGET', lease, 'owner', 'token')
  if f.err then
    out[i] = {'err', f.err}
  elseif f[1] ~= consumer or f[2] ~= token then
    out[i] = {'stale', f[1] or ''}
  else
    local pend = redis.pcall('XPENDING', inbox, group, '(' .. after, '+', count, consumer)
    if pend.err then
      out[i] = {'err', pend.err}
    elseif #pend == 0 then
      out[i] = {'ok', {}, {}}
      plain[#plain + 1] = inbox
      byName[inbox] = i
    else
      local entries, counts = {}, {}
      for _, row in ipairs(pend) do
        local e = redis.call('XRANGE', inbox, row[1], row[1])
        if #e == 0 then
          redis.call('XACK', inbox, group, row[1])
        else
          entries[#entries + 1] = e[1]
          counts[#counts + 1] = row[4]
        end
      end
      out[i] = {'ok', entries, counts}
      if #pend < count then
        -- The rest of this shard's count in new entries, read alone (rare: a lost answer).
        local r = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #pend, 'STREAMS', inbox, '>')
        if r and r.err then
          out[i] = {'err', r.err}
        elseif r then
          for _, e in ipairs(r[1][2]) do entries[#entries + 1] = e end
        end
      end
    end
  end
end
local function take(r)
  for _, s in ipairs(r) do
    local i = byName[s[1]]
    if i then out[i][2] = s[2] end
  end
end
if #plain > 0 then
  local args = {'GROUP', group, consumer, 'COUNT', count, 'STREAMS'}
  for _, inbox in ipairs(plain) do args[#args + 1] = inbox end
  for _ = 1, #plain do args[#args + 1] = '>' end
  local r = redis.pcall('XREADGROUP', unpack(args))
  if r and r.err then
    -- One stream's trouble fails that shard alone.
    for _, inbox in ipairs(plain) do
      local one = redis.pcall('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', inbox, '>')
      if one and one.err then
        out[byName[inbox]] = {'err', one.err}
      elseif one then
        take(one)
      end
    end
  elseif r then
    take(r)
  end
end
return out
