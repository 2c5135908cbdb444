-- Unread counts of one user in some rooms on a single Redis (src/sync/unread-counts.ts): what took
-- four commands per room (the user's read receipts in the room, the thread notifications, the two
-- counts above the read position) in one call, for every room of a /sync answer. The receipts hash
-- is on the room's shard and the counts on the user's: keys of two hash slots, so not on a Cluster
-- (which keeps the commands).
-- KEYS, four per room: the room's receipts (hash), the user's unread thread notifications in it
--   (zset), their unread notifications and highlights in it (zsets)
-- ARGV[1] how many receipt fields mark the main timeline read (n); ARGV[2..n+1] those fields, in
--   `readFields(user, null)` order: the unthreaded ones first (two), then those of thread "main"
-- ARGV[n+2..] per room, the position of the user's membership (counting starts after it)
-- Returns per room {unthreaded read position, main read position, notifications, highlights,
-- ZRANGE WITHSCORES of the thread notifications}; a position is a receipt's JSON `pos`.
local n = tonumber(ARGV[1])
local fields = {}
for i = 1, n do fields[i] = ARGV[1 + i] end
local function pos(v)
  if not v then return 0 end
  local ok, r = pcall(cjson.decode, v)
  if ok and type(r) == 'table' and type(r.pos) == 'number' then return r.pos end
  return 0
end
local out = {}
for r = 1, #KEYS / 4 do
  local k = (r - 1) * 4
  local values = redis.call('HMGET', KEYS[k + 1], unpack(fields))
  local p = {}
  for i = 1, n do p[i] = pos(values[i]) end
  local joined = tonumber(ARGV[n + 1 + r]) or 0
  local unthreaded = math.max(p[1] or 0, p[2] or 0)
  local main = math.max(unthreaded, p[3] or 0, p[4] or 0)
  unthreaded = math.max(unthreaded, joined)
  main = math.max(main, joined)
  local after = '(' .. string.format('%.0f', main)
  out[r] = {
    string.format('%.0f', unthreaded),
    string.format('%.0f', main),
    redis.call('ZCOUNT', KEYS[k + 3], after, '+inf'),
    redis.call('ZCOUNT', KEYS[k + 4], after, '+inf'),
    redis.call('ZRANGE', KEYS[k + 2], 0, -1, 'WITHSCORES'),
  }
end
return out
