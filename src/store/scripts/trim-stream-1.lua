-- Trim a stream below the oldest entry any consumer group still needs: for each group, its oldest
-- pending entry, or (when nothing is pending) the entry after its last delivered one. A stream
-- without groups is left alone.
-- KEYS[1] stream
-- ARGV[1] (optional) retention in ms: entries newer than Redis TIME minus this are kept even when
--         every group has read them (room and user outboxes keep a window for /sync, which reads
--         them by time: src/api/client/sync.ts)
-- Returns the number of entries removed.
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok or #groups == 0 then
  return 0
end
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local min = nil
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local keep
  local pending = redis.call('XPENDING', KEYS[1], info['name'])
  if tonumber(pending[1]) > 0 then
    keep = pending[2]
  else
    local ms, seq = parse(info['last-delivered-id'])
    keep = ms .. '-' .. (seq + 1)
  end
  if min == nil or less(keep, min) then min = keep end
end
local retention = tonumber(ARGV[1] or '0') or 0
if retention > 0 then
  local t = redis.call('TIME')
  local floor = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - retention) .. '-0'
  if less(floor, min) then min = floor end
end
return redis.call('XTRIM', KEYS[1], 'MINID', min)
