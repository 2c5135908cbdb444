-- Record that an event notifies some users (src/readers/push-evaluator.ts): one call per event for
-- all the notified users whose keys live together (every user on a single Redis; the users of one
-- user shard, hence one hash slot, on a Cluster). Idempotent: the same event again changes nothing
-- (a redelivered outbox entry).
--
-- What it does per user is the least that keeps what users see: one ZADD to the room's unread set
-- (two for a highlight), one ZADD NX to the notification list and, when that was new and the
-- details are not those GET /notifications derives from the event (a plain `["notify"]` of an
-- event without a relation: push-evaluator.ts `derivedDetails`), one HSET of them. Nothing here trims what was read: the counts are read above the receipts anyway
-- (src/sync/unread-counts.ts), and the receipt entries of the same outbox trim what a receipt
-- covers (push-evaluator.ts `trimRead`). The list is trimmed in chunks, when the evaluator asks
-- (every TRIM_EVERY records it sends for the user): it holds the latest `keep` and up to a chunk
-- more between trims, and GET /notifications serves only the latest `keep`. (push-record-2.lua
-- did ~11 commands per user: a membership look-up, two trims of each unread set, a ZCARD and the
-- trim of one list entry per event.)
--
-- KEYS, per user, in this order (flags below say which are there):
--   the user's unread notifications in the room: main timeline (zset: event id by timeline
--     position), or for an event in a thread the thread notifications (zset:
--     '<n|h>\0<thread root>\0<event id>' by position)
--   [highlight, main timeline] the highlighting subset of the main-timeline set
--   the user's notification list (zset: '<room id>\0<event id>' by arrival)
--   [highlight or trim] the highlighting subset of the list
--   [store or trim] notification details (hash: list member -> JSON)
--   [check] the user's joined-rooms index (hash: room id -> '<pos>:<membership>'): counts start
--     after the user's latest membership event, as Synapse's do; the evaluator asks for the check
--     only when its view of the room's members may be later than the event (loaded after it)
-- ARGV, the event's, the same for every user:
--   ARGV[1] the event's timeline position
--   ARGV[2] event id
--   ARGV[3] thread root id, '' for the main timeline
--   ARGV[4] the notification list member ('<room id>\0<event id>')
--   ARGV[5] its score (when the event reached the room's outbox: ms * 1000 + sequence)
--   ARGV[6] how many notifications a user's list keeps
--   ARGV[7] room id
--   ARGV[8] D, how many distinct notification details follow
--   ARGV[9 .. 8+D] the details (JSON; users with the same actions share one)
-- Then per user, three:
--   +1 flags: 1 the notification highlights, 2 check the membership, 4 trim the list, 8 store
--      the details
--   +2 which of the details is theirs (1..D; 0 when not stored)
--   +3 the user's read position for this event (main timeline: the latest unthreaded or 'main'
--      receipt; thread: unthreaded or this thread's receipt; 0: none). The event is not unread
--      for the user unless it comes after it.
-- Returns how many users the event was new to (their list did not have it yet).
local pos = tonumber(ARGV[1])
local eventId = ARGV[2]
local thread = ARGV[3]
local member = ARGV[4]
local score = ARGV[5]
local keep = tonumber(ARGV[6])
local roomId = ARGV[7]
local distinct = tonumber(ARGV[8])
local added = 0
local k = 0
local a = 8 + distinct
local tail = '\0' .. thread .. '\0' .. eventId

-- Remove some members from a zset, a hash, in pieces (unpack has a bound).
local function removeAll(cmd, key, members)
  for i = 1, #members, 500 do
    redis.call(cmd, key, unpack(members, i, math.min(i + 499, #members)))
  end
end

while a + 3 <= #ARGV do
  local flags = tonumber(ARGV[a + 1])
  local details = ARGV[8 + tonumber(ARGV[a + 2])]
  local read = tonumber(ARGV[a + 3])
  a = a + 3
  local highlight = flags % 2 == 1
  local check = math.floor(flags / 2) % 2 == 1
  local trim = math.floor(flags / 4) % 2 == 1
  local store = math.floor(flags / 8) % 2 == 1
  local unread = KEYS[k + 1]
  k = k + 1
  local unreadHighlight
  if highlight and thread == '' then
    unreadHighlight = KEYS[k + 1]
    k = k + 1
  end
  local list = KEYS[k + 1]
  k = k + 1
  local listHighlight
  if highlight or trim then
    listHighlight = KEYS[k + 1]
    k = k + 1
  end
  local data
  if store or trim then
    data = KEYS[k + 1]
    k = k + 1
  end
  if check then
    local membership = redis.call('HGET', KEYS[k + 1], roomId)
    k = k + 1
    local joined = membership and tonumber(string.match(membership, '^(%d+):')) or 0
    if joined > read then read = joined end
  end

  if pos > read then
    if thread == '' then
      redis.call('ZADD', unread, pos, eventId)
      if highlight then
        redis.call('ZADD', unreadHighlight, pos, eventId)
      end
    elseif not redis.call('ZSCORE', unread, 'n' .. tail) and not redis.call('ZSCORE', unread, 'h' .. tail) then
      redis.call('ZADD', unread, pos, (highlight and 'h' or 'n') .. tail)
    end
  end

  if redis.call('ZADD', list, 'NX', score, member) == 1 then
    added = added + 1
    if store then
      redis.call('HSET', data, member, details)
    end
    if highlight then
      redis.call('ZADD', listHighlight, score, member)
    end
  end
  if trim then
    local n = redis.call('ZCARD', list)
    if n > keep then
      local old = redis.call('ZRANGE', list, 0, n - keep - 1)
      redis.call('ZREMRANGEBYRANK', list, 0, n - keep - 1)
      removeAll('ZREM', listHighlight, old)
      removeAll('HDEL', data, old)
    end
  end
end
return added
