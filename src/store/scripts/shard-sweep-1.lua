-- The safety sweep of a worker's shards (read only): which of them have work that a lost wake-up
-- could have left waiting. Wake-ups (pub/sub for inboxes, in-process for outbox readers) drive
-- the work; this backs them up in one call for many shards instead of a read per shard and poll.
-- An empty stream costs one XLEN: idle shards, once trimmed, cost next to nothing.
-- KEYS pairs: inbox stream, outbox stream (of one shard)
-- ARGV[1] the inbox consumer group
-- ARGV[2] pending inbox entries idle at least this long (ms) are reported for reclaiming
-- ARGV[3..] the outbox reader groups to look at (none: every group of the outbox)
-- Returns one integer per shard, the sum of:
--   1  the inbox holds entries not yet delivered to the group (read it)
--   2  the inbox group has pending entries idle past the bound (reclaim them)
--   4  an outbox reader group has entries not delivered or pending, or does not exist yet (wake
--      the readers)
--   8  the inbox or the outbox holds entries at all (housekeeping may trim them)
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local function lastId(stream)
  local r = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #r == 0 then return nil end
  return r[1][1]
end
-- Group name -> {last-delivered-id, pending} (nil when the stream or its groups do not exist).
local function groups(stream)
  local ok, gs = pcall(redis.call, 'XINFO', 'GROUPS', stream)
  if not ok then return nil end
  local out = {}
  for _, g in ipairs(gs) do
    local info = {}
    for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
    out[info['name']] = { info['last-delivered-id'], tonumber(info['pending']) or 0 }
  end
  return out
end
local inboxGroup = ARGV[1]
local idleBound = tonumber(ARGV[2])
local readerGroups = {}
for i = 3, #ARGV do readerGroups[#readerGroups + 1] = ARGV[i] end
local out = {}
for i = 1, #KEYS, 2 do
  local inbox, outbox = KEYS[i], KEYS[i + 1]
  local flags = 0
  local ilen = redis.call('XLEN', inbox)
  local olen = redis.call('XLEN', outbox)
  if ilen > 0 or olen > 0 then flags = 8 end
  if ilen > 0 then
    local gs = groups(inbox)
    local g = gs and gs[inboxGroup]
    if g then
      local last = lastId(inbox)
      if last and less(g[1], last) then flags = flags + 1 end
      if g[2] > 0 and #redis.call('XPENDING', inbox, inboxGroup, 'IDLE', idleBound, '-', '+', 1) > 0 then flags = flags + 2 end
    end
  end
  if olen > 0 then
    local gs = groups(outbox) or {}
    do
      local last = lastId(outbox)
      local behind = false
      -- A reader group not created yet (its reader attached quietly) has everything to read.
      local function check(g)
        if not g or g[2] > 0 or (last and less(g[1], last)) then behind = true end
      end
      if #readerGroups > 0 then
        for _, name in ipairs(readerGroups) do check(gs[name]) end
      else
        for _, g in pairs(gs) do check(g) end
      end
      if behind then flags = flags + 4 end
    end
  end
  out[#out + 1] = flags
end
return out
