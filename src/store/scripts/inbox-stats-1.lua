-- Inbox figures of many shards in one call, for a worker's metrics (read only): per shard the
-- consumer group's lag (entries not yet delivered; 0 when Redis cannot tell) and pending count
-- (delivered, not acknowledged), and the length of the dead-letter stream. On a Cluster each
-- shard's keys live in their own slot and this is called per shard.
-- KEYS pairs: inbox stream, dead-letter stream (of one shard)
-- ARGV[1] the inbox consumer group
-- Returns a flat list, three integers per shard: lag, pending, dead.
local out = {}
for i = 1, #KEYS, 2 do
  local lag, pending = 0, 0
  local groups = redis.pcall('XINFO', 'GROUPS', KEYS[i])
  if type(groups) == 'table' and not groups.err then
    for _, g in ipairs(groups) do
      local name, glag, gpending
      for j = 1, #g, 2 do
        if g[j] == 'name' then name = g[j + 1]
        elseif g[j] == 'lag' then glag = g[j + 1]
        elseif g[j] == 'pending' then gpending = g[j + 1] end
      end
      if name == ARGV[1] then
        if type(glag) == 'number' then lag = glag end
        if type(gpending) == 'number' then pending = gpending end
      end
    end
  end
  out[#out + 1] = lag
  out[#out + 1] = pending
  out[#out + 1] = redis.call('XLEN', KEYS[i + 1])
end
return out
