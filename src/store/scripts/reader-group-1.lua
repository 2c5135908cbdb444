-- The shared outbox reader group of a shard's outbox (src/readers/reader-group.ts), created where
-- the readers' own groups of before had got to, and those groups removed (the rolling upgrade from
-- one group per reader to one per family; run at each attach's first read, so groups an older
-- worker made meanwhile go too).
-- KEYS[1] the outbox stream
-- ARGV[1] the shared group
-- ARGV[2..] the groups the same readers read with before
-- If the shared group is missing it is created (MKSTREAM) so that it delivers every entry one of
-- the old groups had not finished: after the slowest old group's position — the entry before its
-- oldest pending entry, or its last delivered entry — so entries a faster group had applied are
-- applied again (readers apply idempotently), none is skipped. Without old groups: from the start.
-- If it exists, every entry above its last delivered id is still to be delivered by it (entries an
-- old worker's groups read meanwhile included): the old groups can go at once.
-- Returns {created (0/1), old groups removed}.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
-- The id just before `id` (ids are <ms>-<seq>, seq a 64-bit counter).
local function before(id)
  local ms, seq = parse(id)
  if seq > 0 then return string.format('%.0f', ms) .. '-' .. string.format('%.0f', seq - 1) end
  if ms > 0 then return string.format('%.0f', ms - 1) .. '-18446744073709551615' end
  return '0-0'
end
local outbox, shared = KEYS[1], ARGV[1]
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', outbox)
if not ok then groups = {} end
local have = {}
for _, g in ipairs(groups) do
  local info = {}
  for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
  have[info['name']] = info
end
local created = 0
if not have[shared] then
  local start = nil
  for i = 2, #ARGV do
    local info = have[ARGV[i]]
    if info then
      local pos = info['last-delivered-id']
      if tonumber(info['pending']) > 0 then
        local p = redis.call('XPENDING', outbox, ARGV[i])
        if p[2] then pos = before(p[2]) end
      end
      if start == nil or less(pos, start) then start = pos end
    end
  end
  redis.call('XGROUP', 'CREATE', outbox, shared, start or '0', 'MKSTREAM')
  created = 1
end
local removed = 0
for i = 2, #ARGV do
  if have[ARGV[i]] then
    redis.call('XGROUP', 'DESTROY', outbox, ARGV[i])
    removed = removed + 1
  end
end
return { created, removed }
