-- Unread counts on a single Redis (src/sync/unread-counts.ts): one call for every room of a /sync
-- answer, and for the answers of several users computed together (the long-polls one message
-- wakes), one segment each. The receipts and the room's push log are on the room's shard, the
-- exceptions on the user's: keys of two hash slots, so not on a Cluster (which uses commands).
--
-- A member's count is the room's push log above their read position (what notified the room's
-- members as most of them were notified), corrected by their exceptions (src/store/keys.ts
-- pushData.exceptions: '<own><common>\0<thread>\0<event id>'), plus the unread sets written
-- before the push log (unread-counts-2.lua's, read the same way). An exception below the log's
-- oldest kept entry does not take anything off (the log no longer has its event).
--
-- The user's own latest event in the main timeline reads as an unthreaded receipt at it (the
-- spec's "Marking notifications as read": sending an event marks what came before it read): the
-- room's `sentUpTo` (src/store/keys.ts pushData.sentUpTo) scores the user's member by its position.
--
-- ARGV[1] S, the segments (one user's rooms each); then per segment, in order:
--   ARGV  r (its rooms), n (how many receipt fields mark the main timeline read), the n fields in
--         `readFields(user, null)` order (the unthreaded ones first (two), then those of thread
--         "main"), the user's `sentUpTo` member for the main timeline, then per room the position
--         of the user's membership (counting starts after it; -1 when it is not a join: the room's
--         log is then not theirs)
--   KEYS  nine per room: the room's receipts (hash), its push log, the log's highlights, its
--         thread log (room shard); the user's exceptions in it, then the user's old unread
--         thread notifications, notifications and highlights (user shard); the room's `sentUpTo`
--         (room shard)
-- Returns per segment, per room {unthreaded read position, main read position, notifications,
-- highlights, the thread notifications above the unthreaded read position as ZRANGE WITHSCORES
-- ('<n|h>\0<root>\0<event id>', position)}; a position is a receipt's JSON `pos`.
local function pos(v)
  if not v then return 0 end
  local ok, r = pcall(cjson.decode, v)
  if ok and type(r) == 'table' and type(r.pos) == 'number' then return r.pos end
  return 0
end
local function floorOf(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
  return first and tonumber(first) or math.huge
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
  local sentAs = ARGV[a + 3 + n]
  local joinedAt = a + 3 + n
  local out = {}
  for r = 1, rooms do
    local receipts, log, logHighlight, logThreads, exceptions, oldThreads, oldUnread, oldHighlight, sentKey =
      KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6], KEYS[k + 7], KEYS[k + 8], KEYS[k + 9]
    local values = redis.call('HMGET', receipts, unpack(fields))
    local p = {}
    for i = 1, n do p[i] = pos(values[i]) end
    local sent = tonumber(redis.call('ZSCORE', sentKey, sentAs)) or 0
    -- -1: not a member now (the room's log is not theirs; only the old sets count).
    local joined = tonumber(ARGV[joinedAt + r]) or 0
    local member = joined >= 0
    if not member then
      joined = 0
      end
    local unthreaded = math.max(p[1] or 0, p[2] or 0, joined, sent)
    local main = math.max(unthreaded, p[3] or 0, p[4] or 0)
    local after = '(' .. string.format('%.0f', main)
    local fromThreads = '(' .. string.format('%.0f', unthreaded)
    local notifications = redis.call('ZCOUNT', oldUnread, after, '+inf')
    local highlights = redis.call('ZCOUNT', oldHighlight, after, '+inf')
    if member then
      notifications = notifications + redis.call('ZCOUNT', log, after, '+inf')
      highlights = highlights + redis.call('ZCOUNT', logHighlight, after, '+inf')
    end
    local threads = {}
    local ownInThread = {}
    local mainFloor, threadFloor
    local exc = member and redis.call('ZRANGEBYSCORE', exceptions, fromThreads, '+inf', 'WITHSCORES') or {}
    for i = 1, #exc, 2 do
      local m = exc[i]
      local at = tonumber(exc[i + 1])
      local own, common = string.sub(m, 1, 1), string.sub(m, 2, 2)
      local rest = string.sub(m, 4)
      local sep = string.find(rest, '\0', 1, true)
      local thread = string.sub(rest, 1, sep - 1)
      if thread == '' then
        if at > main then
          if common ~= 'x' then
            mainFloor = mainFloor or floorOf(log)
            if at < mainFloor then common = 'x' end
          end
          notifications = notifications + (own ~= 'x' and 1 or 0) - (common ~= 'x' and 1 or 0)
          if common == 'h' then highlights = highlights - 1 end
          if own == 'h' then highlights = highlights + 1 end
        end
      else
        local present = common ~= 'x'
        if present then
          threadFloor = threadFloor or floorOf(logThreads)
          present = at >= threadFloor
        end
        if present then
          ownInThread[string.sub(rest, sep + 1)] = own
        elseif own ~= 'x' then
          threads[#threads + 1] = own .. '\0' .. rest
          threads[#threads + 1] = exc[i + 1]
        end
      end
    end
    local logged = member and redis.call('ZRANGEBYSCORE', logThreads, fromThreads, '+inf', 'WITHSCORES') or {}
    for i = 1, #logged, 2 do
      local m = logged[i]
      local tail = string.sub(m, 2)
      local eventId = string.sub(tail, string.find(tail, '\0', 2, true) + 1)
      local own = ownInThread[eventId]
      if own == nil then
        threads[#threads + 1] = m
        threads[#threads + 1] = logged[i + 1]
      elseif own ~= 'x' then
        threads[#threads + 1] = own .. tail
        threads[#threads + 1] = logged[i + 1]
      end
    end
    for _, v in ipairs(redis.call('ZRANGEBYSCORE', oldThreads, fromThreads, '+inf', 'WITHSCORES')) do threads[#threads + 1] = v end
    if notifications < 0 then notifications = 0 end
    if highlights < 0 then highlights = 0 end
    out[r] = {
      string.format('%.0f', unthreaded),
      string.format('%.0f', main),
      notifications,
      highlights,
      threads,
    }
    k = k + 9
  end
  result[s] = out
  a = joinedAt + rooms
end
return result
