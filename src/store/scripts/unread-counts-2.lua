-- Unread counts on a single Redis (src/sync/unread-counts.ts): what took four commands per room
-- (the user's read receipts in the room, the thread notifications, the two counts above the read
-- position) in one call, for every room of a /sync answer — and for the answers of several users
-- computed together (the long-polls one message wakes), one segment each, since a call per answer
-- cost the front a command to build, write and parse and Redis a script run per woken member
-- (unread-counts-1 took one user). The receipts hash is on the room's shard and the counts on the
-- user's: keys of two hash slots, so not on a Cluster (which keeps the commands).
-- ARGV[1] S, the segments (one user's rooms each); then per segment, in order:
--   ARGV  r (its rooms), n (how many receipt fields mark the main timeline read), the n fields in
--         `readFields(user, null)` order (the unthreaded ones first (two), then those of thread
--         "main"), then per room the position of the user's membership (counting starts after it)
--   KEYS  four per room: the room's receipts (hash), the user's unread thread notifications in it
--         (zset), their unread notifications and highlights in it (zsets)
-- Returns per segment, per room {unthreaded read position, main read position, notifications,
-- highlights, ZRANGE WITHSCORES of the thread notifications}; a position is a receipt's JSON `pos`.
local function pos(v)
  if not v then return 0 end
  local ok, r = pcall(cjson.decode, v)
  if ok and type(r) == 'table' and type(r.pos) == 'number' then return r.pos end
  return 0
end
local segments = tonumber(ARGV[1])
local a = 1
local k = 0
local result = {}
for s = 1, segments do
  local rooms = tonumber(ARGV[a + 1])
  local n = tonumber(ARGV[a + 2])
  local fields = {}
  for i = 1, n do fields[i] = ARGV[a + 2 + i] end
  local joinedAt = a + 2 + n
  local out = {}
  for r = 1, rooms do
    local values = redis.call('HMGET', KEYS[k + 1], unpack(fields))
    local p = {}
    for i = 1, n do p[i] = pos(values[i]) end
    local joined = tonumber(ARGV[joinedAt + r]) or 0
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
    k = k + 4
  end
  result[s] = out
  a = joinedAt + rooms
end
return result
