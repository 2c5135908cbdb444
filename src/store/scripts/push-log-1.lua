-- Record what an event notifies (src/readers/push-evaluator.ts), at O(1) per event for the common
-- outcome plus a few commands per member whose outcome differs. Called once per event on a single
-- Redis (the room's part and every user's part), on a Cluster once for the room's part (room
-- shard keys) and once per user shard for the users' parts (a call's keys share a hash slot).
-- Idempotent: the same event again changes nothing (a redelivered outbox entry).
--
-- The room's part (when ARGV[8], the common outcome, is 'n' or 'h'): the event in the room's
-- push log (src/store/keys.ts pushData.roomLog: main timeline by position, or roomLogThreads as
-- '<n|h>\0<root>\0<event id>'; roomLogHighlight for a main-timeline highlight), capped by rank at
-- ARGV[6]; and in the room's notification list (roomList, scored by arrival; roomListHighlight;
-- the details in roomListData unless plain), trimmed back to ARGV[5] when it holds a chunk more.
-- Every joined local member but those with exceptions is notified so: that is all the writes.
--
-- The users' part, per user whose outcome differs from the common one, or who is notified but
-- not a member (an invitee): their exception (pushData.exceptions, member
-- '<own><common>\0<thread>\0<event id>' by position; any other exception of the same event is
-- replaced, so a replay with other rules does not leave two), their own list entry when they are
-- notified (notifications, highlights, notificationData as before the log), and when the room's
-- list has the event but not as theirs, an entry in their `excluded` set.
--
-- KEYS: [flag 4] the room's members (hash: the room is not purged), [room part] the log (main or threads), [h and main] the log's highlights, the list,
--   [h or trim] the list's highlights, [details or trim] the list's details; then per user, in this
--   order, those their flags ask for: exceptions, notifications, highlights, notificationData,
--   excluded.
-- ARGV[1] the event's timeline position   ARGV[2] event id   ARGV[3] thread root ('' main)
-- ARGV[4] its list score                  ARGV[5] list keep  ARGV[6] log and exceptions keep
-- ARGV[7] room id                         ARGV[8] common outcome: '' none, 'n', 'h'
-- ARGV[9] flags: 1 store the common details (ARGV[10]), 2 trim the room's list, 4 the first key is
--   the room's members (every call on a single Redis, the room's call on a Cluster)
-- ARGV[10] the common details JSON ('' when not stored)
-- ARGV[11] excluded keep
-- ARGV[12] D, distinct user details; ARGV[13 .. 12+D] the details
-- then per user, three: flags (1 exception, 2 own list entry, 4 own highlight, 8 store own
--   details, 16 trim own list (with 2), 32 excluded), exception code ('<own><common>'), details
--   index (1..D, 0 none)
-- Returns how many users the event was new to in their own list.
local pos = tonumber(ARGV[1])
local eventId = ARGV[2]
local thread = ARGV[3]
local score = ARGV[4]
local listKeep = tonumber(ARGV[5])
local logKeep = tonumber(ARGV[6])
local roomId = ARGV[7]
local common = ARGV[8]
local roomFlags = tonumber(ARGV[9])
local commonDetails = ARGV[10]
local excludedKeep = tonumber(ARGV[11])
local distinct = tonumber(ARGV[12])
local member = roomId .. '\0' .. eventId
local k = 0
local function key()
  k = k + 1
  return KEYS[k]
end
local function removeAll(cmd, name, members)
  for i = 1, #members, 500 do
    redis.call(cmd, name, unpack(members, i, math.min(i + 499, #members)))
  end
end

-- A notification list trimmed back to listKeep, with its highlights and details of the entries dropped.
local function trimList(list, highlights, data)
  local n = redis.call('ZCARD', list)
  if n > listKeep then
    local old = redis.call('ZRANGE', list, 0, n - listKeep - 1)
    redis.call('ZREMRANGEBYRANK', list, 0, n - listKeep - 1)
    removeAll('ZREM', highlights, old)
    removeAll('HDEL', data, old)
  end
end

-- Nothing once the room is purged (its members hash is gone; the evaluator may run behind the
-- purge and must not leave a key of the room, or of its members for it, behind).
if math.floor(roomFlags / 4) % 2 == 1 and redis.call('EXISTS', key()) == 0 then return 0 end
if common ~= '' then
  local log = key()
  if thread == '' then
    redis.call('ZADD', log, pos, eventId)
    if common == 'h' then redis.call('ZADD', key(), pos, eventId) end
  else
    local tail = '\0' .. thread .. '\0' .. eventId
    -- One entry per event, whichever outcome a replay finds.
    if not redis.call('ZSCORE', log, (common == 'h' and 'n' or 'h') .. tail) then
      redis.call('ZADD', log, pos, common .. tail)
    end
  end
  redis.call('ZREMRANGEBYRANK', log, 0, -logKeep - 1)
  local list = key()
  local store = roomFlags % 2 == 1
  local trim = math.floor(roomFlags / 2) % 2 == 1
  local listHighlight, data
  if common == 'h' or trim then listHighlight = key() end
  if store or trim then data = key() end
  if redis.call('ZADD', list, 'NX', score, eventId) == 1 then
    if store then redis.call('HSET', data, eventId, commonDetails) end
    if common == 'h' then redis.call('ZADD', listHighlight, score, eventId) end
  end
  if trim then trimList(list, listHighlight, data) end
end

local added = 0
local a = 12 + distinct
while a + 3 <= #ARGV do
  local flags = tonumber(ARGV[a + 1])
  local code = ARGV[a + 2]
  local details = ARGV[12 + tonumber(ARGV[a + 3])]
  a = a + 3
  local own = math.floor(flags / 2) % 2 == 1
  local highlight = math.floor(flags / 4) % 2 == 1
  local store = math.floor(flags / 8) % 2 == 1
  local trim = math.floor(flags / 16) % 2 == 1
  if flags % 2 == 1 then
    local px = key()
    local tail = '\0' .. thread .. '\0' .. eventId
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', px, pos, pos)) do
      if string.sub(m, 3) == tail then redis.call('ZREM', px, m) end
    end
    redis.call('ZADD', px, pos, code .. tail)
    redis.call('ZREMRANGEBYRANK', px, 0, -logKeep - 1)
  end
  local list, hl, data
  if own then list = key() end
  if highlight or trim then hl = key() end
  if store or trim then data = key() end
  if own and redis.call('ZADD', list, 'NX', score, member) == 1 then
    added = added + 1
    if store then redis.call('HSET', data, member, details) end
    if highlight then redis.call('ZADD', hl, score, member) end
  end
  if trim then trimList(list, hl, data) end
  if math.floor(flags / 32) % 2 == 1 then
    local excluded = key()
    redis.call('ZADD', excluded, score, member)
    redis.call('ZREMRANGEBYRANK', excluded, 0, -excludedKeep - 1)
  end
end
return added
